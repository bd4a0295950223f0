"""asrgguf's GGUF pair runs in llama.cpp's own multimodal pipeline (libmtmd, bench/mtmd_run.py).

llama.cpp's preprocessor makes n_samples/160 + 1 mel frames and pads each window's last chunk to
13 positions, so its audio position count equals the official one only when n_samples/160 ends in
99 mod 100; there its tokens equal asrgguf's. Elsewhere the agreement is recorded, not asserted.
"""
import json
import subprocess
import sys
from pathlib import Path

import soundfile as sf

from asrgguf import Transcriber
from asrgguf.encoder import output_length
from support.reference import official_model, official_tokens, official_wav

TOOL = Path(__file__).resolve().parents[1] / "bench" / "mtmd_run.py"


def mtmd(decoder, mmproj, audio, n=24):
    r = subprocess.run([sys.executable, str(TOOL), str(audio), "--model", str(decoder), "--mmproj", str(mmproj),
                        "--max-new-tokens", str(n), "--flash-attn", "off", "--threads", "2"],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def test_pair_runs_in_llama_cpp_where_counts_agree(gguf_pair, ck_gqa, clip5, tmp_path):
    wav = official_wav(str(clip5))[:63840]  # 399 mel frames: llama.cpp and the official count agree
    path = tmp_path / "agree.wav"
    sf.write(path, wav, 16000, subtype="FLOAT")
    dec, mm = gguf_pair(ck_gqa, "f32")
    peer = mtmd(dec, mm, path)
    ours = Transcriber.from_gguf(dec, mm, max_new_tokens=24).transcribe_all(str(path))
    assert peer["n_audio_positions"] == output_length(399) == 52
    assert peer["token_ids"] == ours.token_ids
    ref = official_tokens(official_model(str(ck_gqa)), wav, max_new_tokens=24)
    assert peer["token_ids"] == ref


def test_pair_runs_in_llama_cpp_on_wav(gguf_pair, ck_gqa, clip5):
    dec, mm = gguf_pair(ck_gqa, "q8_0")
    peer = mtmd(dec, mm, clip5)
    wav = official_wav(str(clip5))
    ref = official_tokens(official_model(str(ck_gqa)), wav, max_new_tokens=24)
    assert len(peer["token_ids"]) > 0
    assert peer["n_audio_positions"] > output_length(len(wav) // 160)  # llama.cpp pads the last chunk
    same = next((i for i, (a, b) in enumerate(zip(peer["token_ids"], ref)) if a != b), len(ref))
    print(f"llama.cpp mtmd (q8_0 + f16 mmproj) on {clip5.name}: {peer['n_audio_positions']} audio positions "
          f"vs official {output_length(len(wav) // 160)}; first {same} of {len(ref)} tokens equal to the official")
