"""The model-spec grammar and the loaded-model record every later stage reads.

One grammar everywhere (pytest option, CLI, Python API)::

    zoo:NAME                         a trained model shipped in model_zoo
    torchvision:ARCH[@WEIGHTS]       torchvision architecture (random init without weights)
    timm:ARCH[@WEIGHTS]              timm architecture (needs the optional timm extra)
    package.module:factory[@WEIGHTS] any importable callable returning an nn.Module
    path/to/file.py:factory[@WEIGHTS] the same, from a Python file
    path/to/model.onnx               an ONNX export, run by onnxruntime
    ...+nc-id | +nc-plain | +nc-perm | +nc-rand   a negative control applied on top
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace
from typing import Any

from resstream_assert.errors import ModelSpecError
from resstream_assert.kinds import Backend

#: Negative controls (DESIGN.md decision 9), by spec suffix; applied by ``interventions.controls``.
CONTROLS = ("nc-id", "nc-plain", "nc-perm", "nc-rand")
#: The normalization torchvision and timm ImageNet models expect (and the default for ONNX files).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


#: ``path/to/mynet.py:make_net[@WEIGHTS]``: a factory in a Python file (the path may contain ':', e.g. C:\\).
_FILE_FACTORY = re.compile(r"^(.+?\.py):(?![\\/])(.*)$", re.IGNORECASE | re.DOTALL)

GRAMMAR = ("'zoo:NAME', 'torchvision:ARCH[@WEIGHTS]', 'timm:ARCH[@WEIGHTS]', 'package.module:factory[@WEIGHTS]' "
           "(a module importable from the current folder), 'path/to/file.py:factory[@WEIGHTS]', or a path ending "
           "in '.onnx'")


def _grammar_error(text: str, raw: str) -> str:
    """What is wrong with a spec that has no ``KIND:TARGET`` form, with the likeliest fix first."""
    hint = ""
    if raw.lower().endswith(".py"):
        hint = (f" A Python file needs the factory to call: '{raw}:make_net' (the function or class in it that "
                "returns the model).")
    elif raw.lower().endswith((".pth", ".pt", ".ckpt", ".bin", ".safetensors", ".th", ".tar")):
        hint = (f" A weights file needs the architecture it fits, before an '@': e.g. "
                f"'torchvision:resnet18@{raw}' or 'mynet.py:make_net@{raw}'.")
    elif raw.endswith(":"):
        example = f"'{raw}make_net'" if raw.lower().endswith(".py:") or raw[:-1] not in ("torchvision", "timm", "zoo") \
            else f"'{raw}resnet18'"
        hint = f" Name what to build after the ':', e.g. {example}."
    return (f"Cannot read model spec {text!r}.{hint} Use one of: {GRAMMAR}; add '+nc-id', '+nc-plain', '+nc-perm' "
            "or '+nc-rand' for a negative control. Run 'resstream zoo' to list the shipped models.")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec.

    Example:
        >>> ModelSpec.parse("torchvision:resnet18@w.pth+nc-id")
        ModelSpec(kind='torchvision', target='resnet18', weights='w.pth', control='nc-id', text='torchvision:resnet18@w.pth+nc-id')
    """

    kind: str  # zoo | torchvision | timm | factory | onnx
    target: str
    weights: str | None
    control: str | None
    text: str

    @classmethod
    def parse(cls, text: str) -> "ModelSpec":
        """Parse a spec string; raises :class:`ModelSpecError` with the grammar on failure."""
        raw = text.strip()
        control = None
        m = re.search(r"\+(nc-[a-z]+)$", raw)
        if m:
            control = m.group(1)
            if control not in CONTROLS:
                raise ModelSpecError(
                    f"Unknown negative control '+{control}' in model spec {text!r}. "
                    f"Known controls: {', '.join('+' + c for c in CONTROLS)}.")
            raw = raw[: m.start()]
            more = re.findall(r"\+nc-[a-z]+", raw)
            if more:
                raise ModelSpecError(
                    f"Model spec {text!r} asks for {len(more) + 1} negative controls ({''.join(more)}+{control}); a "
                    "spec takes one. Test each control as its own model: repeat --resstream-model with one "
                    "'+nc-...' suffix each.")
        if raw.lower().endswith(".onnx"):
            return cls("onnx", raw, None, control, text)
        file_spec = _FILE_FACTORY.match(raw)
        if file_spec:  # path/to/mynet.py:make_net[@WEIGHTS]: the path may hold ':' (C:\\...), the factory may not
            head, rest = file_spec.group(1), file_spec.group(2)
        else:
            head, _, rest = raw.partition(":")
        if not head or not rest:
            raise ModelSpecError(_grammar_error(text, raw))
        target, at, weights = rest.partition("@")
        if not target.strip():
            what = ("the architecture, e.g. 'torchvision:resnet18'" if head in ("torchvision", "timm") else
                    "the model, e.g. 'zoo:resnet18-synth96' ('resstream zoo' lists them)" if head == "zoo" else
                    f"the factory, e.g. '{head}:make_net' (a function or class that returns an nn.Module)")
            raise ModelSpecError(f"Model spec {text!r} names nothing to build before '@'. Name {what}.")
        if at and not weights.strip():
            raise ModelSpecError(
                f"Model spec {text!r} has an empty weights path after '@'. Give the weights file "
                f"('{head}:{target}@path/to/weights.pth'), or drop the '@' for a random (seeded) initialization.")
        kind = head if head in ("zoo", "torchvision", "timm") else "factory"
        if kind == "factory":
            target = f"{head}:{target}"
        if kind == "zoo" and weights:
            raise ModelSpecError(f"Model spec {text!r}: zoo models carry their own weights; drop '@{weights}'.")
        return cls(kind, target, weights or None, control, text)

    @property
    def factory_file(self) -> str | None:
        """The Python file a factory spec names (``path/to/mynet.py:make_net``), or None.

        Example:
            >>> ModelSpec.parse("models/mynet.py:make_net@w.pth").factory_file
            'models/mynet.py'
            >>> ModelSpec.parse("mynet:make_net").factory_file is None
            True
        """
        if self.kind != "factory":
            return None
        where = self.target.rpartition(":")[0]
        return where if where.lower().endswith(".py") else None

    @property
    def label(self) -> str:
        """A short, stable name for reports, the matrix and test ids: the spec with every path cut to its
        file name (no machine paths in a committed baseline).

        Example:
            >>> ModelSpec.parse("torchvision:resnet18@/data/runs/v2/r18.pth+nc-id").label
            'torchvision:resnet18@r18.pth+nc-id'
            >>> ModelSpec.parse("/exports/r18.onnx").label
            'r18.onnx'
            >>> ModelSpec.parse("torchvision:resnet18@runs/my weights[v2].pth").label
            'torchvision:resnet18@my_weights(v2).pth'
        """
        import ntpath
        import re

        def name(path: str) -> str:  # spaces and brackets would break test ids and the matrix: made plain
            base = ntpath.basename(path.rstrip("/\\")) or path
            return re.sub(r"\s+", "_", base).replace("[", "(").replace("]", ")")

        if self.kind == "onnx":
            base = name(self.target)
        else:
            base = self._target_text(name) if self.kind == "factory" else f"{self.kind}:{self.target}"
            if self.weights:
                base += "@" + name(self.weights)
        return base + (f"+{self.control}" if self.control else "")

    @property
    def architecture(self) -> str:
        """What the spec builds, without its weights file: a new checkpoint of the same architecture is what a
        baseline gates, another architecture is not comparable with it.

        Example:
            >>> ModelSpec.parse("torchvision:resnet18@/runs/v2.pth+nc-id").architecture
            'torchvision:resnet18+nc-id'
            >>> ModelSpec.parse("exports/r18_v2.onnx").architecture
            'an ONNX file'
        """
        if self.kind == "onnx":
            return "an ONNX file"
        base = self._target_text(lambda p: p.replace("\\", "/").rsplit("/", 1)[-1]) if self.kind == "factory" \
            else f"{self.kind}:{self.target}"
        return base + (f"+{self.control}" if self.control else "")

    def _target_text(self, name) -> str:
        """A factory's target with the path of its file (if it names one) cut by ``name``: no machine paths."""
        if self.factory_file is None:
            return self.target
        return f"{name(self.factory_file)}:{self.target.rpartition(':')[2]}"

    @property
    def default_backend(self) -> Backend:
        """``onnx`` for an ONNX file, ``torch`` for everything else.

        Example:
            >>> ModelSpec.parse("exports/r18.onnx").default_backend
            'onnx'
        """
        return "onnx" if self.kind == "onnx" else "torch"


@dataclass(frozen=True)
class OnnxInfo:
    """What an ONNX file says about itself and the session that runs it (``LoadedModel.onnx``).

    ``providers`` are the ones the session really got (onnxruntime falls back to CPU silently, pitfall 6);
    ``bn_folded`` says BatchNorm was folded into the convolutions at export, so gains are proxies.
    """

    providers: tuple[str, ...]
    input_name: str
    input_dtype: str
    exporter: str  # dynamo | torchscript | unknown
    bn_folded: bool
    opset: int | None
    producer: str
    normalisation_in_file: bool  # the file's metadata carries resstream.mean / resstream.std


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for discovery and capture, with what the rest of the pipeline needs. Frozen: a loading
    step (a negative control, another normalisation, the ONNX backend) returns a new record
    (``dataclasses.replace``), so a model memoized by one run is never changed under another's feet.

    ``module`` is an ``nn.Module`` in eval mode (torch backend) or ``None`` (onnx); ``digest`` is a content
    hash of the weights, used as a cache key. The ``*_source`` fields say where a value came from, for the
    pytest header and the report: ``input_size_source`` (``model card``, ``given``, ``timm pretrained_cfg``, a
    stem guess, ...), ``normalisation_source`` (``zoo card``, ``option``, ``ONNX metadata``, ``ImageNet
    default``). ``weights`` says which key and prefix of the weights file were used.

    Example:
        >>> m = LoadedModel("zoo:x", "x", "torch", None, input_size=32, num_classes=10, digest="")
        >>> m.input_size_guessed, m.normalisation_source, m.onnx is None
        (False, 'ImageNet default', True)
    """

    spec: str
    name: str
    backend: Backend
    module: Any
    input_size: int
    num_classes: int
    digest: str
    mean: tuple[float, ...] = IMAGENET_MEAN  # R, G, B
    std: tuple[float, ...] = IMAGENET_STD
    control: str | None = None
    class_names: tuple[str, ...] | None = None
    onnx_path: str | None = None
    source: str = ""  # the spec's kind: zoo | torchvision | timm | factory | onnx
    input_size_source: str = ""
    input_size_guessed: bool = False
    normalisation_source: str = "ImageNet default"
    weights: str | None = None
    exported_from: str | None = None  # an ONNX file: the torch spec it was exported from, when it says
    onnx: OnnxInfo | None = None

    def __repr__(self) -> str:
        return f"LoadedModel({self.spec!r}, backend={self.backend}, input={self.input_size}px)"

    def with_(self, **changes: Any) -> "LoadedModel":
        """A copy with some fields changed (a loading step).

        Example:
            >>> LoadedModel("zoo:x", "x", "torch", None, 32, 10, "").with_(input_size=64).input_size
            64
        """
        return replace(self, **changes)


def as_spec(spec: "str | ModelSpec") -> ModelSpec:
    """``spec`` parsed (a :class:`ModelSpec` passes through): the one place a spec string is read. A run parses
    its models once (``RunConfig.specs``) and hands the parsed specs on; strings reach this only at the edges
    (the Python API, the ``resstream`` commands). Memoized, so an edge that parses again costs nothing.

    Example:
        >>> as_spec("zoo:resnet18-synth96").kind, as_spec(as_spec("r18.onnx")).kind
        ('zoo', 'onnx')
    """
    return spec if isinstance(spec, ModelSpec) else _parse(str(spec))


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> ModelSpec:
    return ModelSpec.parse(text)
