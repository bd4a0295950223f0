"""A load's stages (llama.cpp's decoder load, `import torch`, the encoder's weights) with their start and end in
the transcription's timings: the decoder loads in a thread while torch and the encoder load (CPU builds)."""
from __future__ import annotations


def test_timings_give_each_load_stage_start_and_end(ck_gqa, gguf_pair, clip5):
    from asrgguf.transcribe import Transcriber

    dec, mm = gguf_pair(ck_gqa, "q8_0")
    tr = Transcriber.from_gguf(dec, mm, threads=2, max_new_tokens=4)
    try:
        segs, info = tr.transcribe(str(clip5), language="English")
        list(segs)
    finally:
        tr.close()
    st = info.timings["load_stages"]
    assert set(st) == {"decoder", "import_torch", "encoder"}, st
    for name, s in st.items():
        assert 0.0 <= s["start"] <= s["end"] <= info.timings["load"] + 1e-3, (name, s, info.timings["load"])
    assert st["import_torch"]["end"] <= st["encoder"]["start"]
    # overlapped, not in series: the decoder's load starts before the encoder's ends
    assert st["decoder"]["start"] < st["encoder"]["end"]
