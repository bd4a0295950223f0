"""Reference ids for tools/cuda/check.sh, made here (the GPU image has no qwen-asr): the demo model on three
clips (the packaged sample, two held-out sentences): the official qwen-asr at float32 (greedy), asrgguf's f32
decoder and the packaged q8_0 pair on this CPU.  python tools/cuda/demo_ref.py DIR  (writes DIR/ref.json, clips)"""
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tools")]
from demo_speech import held_out, write_wav  # noqa: E402
from reference import official_model, official_tokens, official_wav  # noqa: E402

from asrgguf import Transcriber, demo  # noqa: E402

CLIPS = ("sample.wav", "h0.wav", "h1.wav")


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
        t = Transcriber.from_gguf(Path(tmp) / "qwen3-asr-demo-f32.gguf", max_new_tokens=64)
        ref["cpu_f32"] = [t.transcribe(str(p)).token_ids for p in clips]
        t.decoder.close()
    t = Transcriber.from_pretrained("demo", max_new_tokens=64)
    res = [t.transcribe(str(p)) for p in clips]
    ref["cpu_q8_0"] = [r.token_ids for r in res]
    ref["cpu_q8_0_text"] = [r.text for r in res]
    (out / "ref.json").write_text(json.dumps(ref))
    print("asrgguf f32 == official f32:", ref["cpu_f32"] == ref["official_f32"], "texts:", ref["cpu_q8_0_text"])


if __name__ == "__main__":
    main(Path(sys.argv[1]))
