"""References for tools/cuda/check.sh, made here: the demo model on three clips (the packaged sample, two
held-out sentences): the official qwen-asr at float32 (greedy), asrgguf's f32 decoder, the packaged q8_0 pair
with the native backend (the default) and with llama.cpp's own products (--no-native), and the word times of
the packaged demo aligner.  python tools/cuda/demo_ref.py DIR  (writes DIR/ref.json and the clips)"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "tests")]
from support.demo_speech import held_out, write_wav  # noqa: E402
from support.reference import official_model, official_tokens, official_wav  # noqa: E402

from asrgguf import Transcriber, demo  # noqa: E402
from asrgguf.align import Aligner  # noqa: E402

CLIPS = ("sample.wav", "h0.wav", "h1.wav")


def words(r) -> list:
    return [[w.text, round(w.start, 3), round(w.end, 3)] for s in r.segments for w in (s.words or [])]


def main(out: Path) -> None:
    clips = [out / c for c in CLIPS]
    shutil.copy(demo.SAMPLE, clips[0])
    for p, text in zip(clips[1:], held_out()[:2]):
        write_wav(p, text, "en-us+f3", speed=160)
    model = official_model(str(demo.CHECKPOINT), max_new_tokens=64)
    ref = {"clips": list(CLIPS), "official_f32": [official_tokens(model, official_wav(str(p))) for p in clips]}
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "asrgguf.cli", "quantize", str(demo.CHECKPOINT), "--outtype", "f32",
                        "-o", tmp, "--quiet"], check=True)
        with Transcriber.from_gguf(Path(tmp) / "qwen3-asr-demo-f32.gguf", max_new_tokens=64) as t:
            ref["cpu_f32"] = [t.transcribe_all(str(p)).token_ids for p in clips]
    for key, off in (("cpu_q8_0", None), ("cpu_q8_0_llamacpp", "1")):
        os.environ.pop("ASRGGUF_NO_NATIVE", None)
        if off:
            os.environ["ASRGGUF_NO_NATIVE"] = off   # what --no-native sets
        with Transcriber.from_pretrained("demo", max_new_tokens=64) as t:
            res = [t.transcribe_all(str(p)) for p in clips]
            ref[key + "_native"] = t.model_info["native"]
        ref[key] = [r.token_ids for r in res]
        ref[key + "_text"] = [r.text for r in res]
    os.environ.pop("ASRGGUF_NO_NATIVE", None)
    with Transcriber.from_pretrained("demo", max_new_tokens=64, aligner=Aligner.load("demo")) as t:
        ref["cpu_words"] = [words(t.transcribe_all(str(p), timestamps="word")) for p in clips]
    (out / "ref.json").write_text(json.dumps(ref))
    print("asrgguf f32 == official f32:", ref["cpu_f32"] == ref["official_f32"], "texts:", ref["cpu_q8_0_text"],
          "native:", ref["cpu_q8_0_native"], ref["cpu_q8_0_llamacpp_native"], "words:", ref["cpu_words"][0])


if __name__ == "__main__":
    main(Path(sys.argv[1]))
