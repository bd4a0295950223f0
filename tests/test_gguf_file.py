"""Reading GGUF tensors into torch: the same values as gguf-py's own dequantization."""
import gguf
import numpy as np

from asrgguf.gguf_file import open_gguf, tensor_to_torch


def test_q8_0_tensor_equals_gguf_py_dequantize(tmp_path):
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((48, 96)) * np.exp(rng.standard_normal((48, 1)))).astype(np.float32)
    Q = gguf.GGMLQuantizationType
    path = tmp_path / "q.gguf"
    writer = gguf.GGUFWriter(str(path), "test")
    writer.add_tensor("w", gguf.quants.quantize(w, Q.Q8_0), raw_dtype=Q.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    (t,) = open_gguf(path, "test").tensors
    expected = gguf.quants.dequantize(t.data, Q.Q8_0)
    got = tensor_to_torch(t).numpy()
    assert got.shape == (48, 96)
    assert np.array_equal(got, expected)
    assert 0 < np.abs(got - w).max() < 0.05 * np.abs(w).max()  # quantized, not the original
