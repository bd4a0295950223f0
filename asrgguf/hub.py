"""Models by name (`Qwen/Qwen3-ASR-0.6B`): fetched with huggingface_hub into its own cache.

Only the files a conversion reads are downloaded (configs, safetensors shards, tokenizer files).
The hub's settings apply as for every other Hugging Face tool: HF_HOME / HF_HUB_CACHE for the cache,
HF_HUB_OFFLINE=1 to use only what is cached, HF_TOKEN for gated or private models.
"""
from __future__ import annotations

import re
from pathlib import Path

from .errors import AsrggufError

# what Checkpoint and the quantizer read: configs, weights, tokenizer (vocab.json + merges.txt)
ALLOW_PATTERNS = ["*.json", "*.safetensors", "merges.txt", "tokenizer*", "*.jinja"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def is_model_name(s: str) -> bool:
    """`org/name` as the hub spells repository ids (a path that exists is never taken for one)."""
    return bool(_NAME.match(s)) and ".." not in s and not Path(s).exists()


def cache_name(repo_id: str) -> str:
    """A directory name for asrgguf's cache: the hub's own spelling (models--org--name without the prefix)."""
    return repo_id.replace("/", "--")


def snapshot(repo_id: str, revision: str | None = None) -> Path:
    """The local snapshot directory of a hub model: downloaded when missing (only the files asrgguf
    reads), taken from the cache when offline. One-line errors for every failure."""
    try:
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub import errors as hf_errors
    except ImportError:  # pragma: no cover - a dependency
        raise AsrggufError(f"{repo_id}: models by name need huggingface_hub (pip install huggingface_hub)") from None
    cache = constants.HF_HUB_CACHE
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=ALLOW_PATTERNS))
    except hf_errors.LocalEntryNotFoundError:
        if constants.HF_HUB_OFFLINE:
            raise AsrggufError(f"{repo_id}: not a checkpoint directory, and not in the Hugging Face cache "
                               f"({cache}) while offline (HF_HUB_OFFLINE=1)") from None
        raise AsrggufError(f"{repo_id}: not a checkpoint directory, and the Hugging Face hub cannot be reached "
                           f"(nothing cached in {cache})") from None
    except hf_errors.GatedRepoError:
        raise AsrggufError(f"{repo_id}: a gated model: accept its terms on huggingface.co and set HF_TOKEN") from None
    except hf_errors.RepositoryNotFoundError:
        raise AsrggufError(f"{repo_id}: no such model on the Hugging Face hub (nor a checkpoint directory)") from None
    except hf_errors.RevisionNotFoundError:
        raise AsrggufError(f"{repo_id}: no revision {revision!r} on the Hugging Face hub") from None
    except hf_errors.HFValidationError as e:
        raise AsrggufError(f"{repo_id}: not a valid model name ({str(e).splitlines()[0]})") from None
    except hf_errors.HfHubHTTPError as e:
        raise AsrggufError(f"{repo_id}: download failed ({str(e).splitlines()[0]})") from None
    except OSError as e:
        raise AsrggufError(f"{repo_id}: download failed ({e.strerror or type(e).__name__})") from None
