"""The architecture table, as data: one entry per architecture, and `resolve`, the one lookup.

Like timm's registry, this is a leaf module for the table's names: config validation, the sweep's
planner and cost model and the weights cache read it without importing a model library.
`trainables.models` turns an entry into a model; `trainables.weights` resolves its weights.

The table holds the study's hand-written entries (source "study"). Any other torchvision
classifier (`convnext_tiny`) or timm model (`timm/convnext_atto`) gets an entry of the same shape
(`trainables.arch_record.Arch`) derived at first use from the library itself
(`trainables.derived`, which imports torch): `resolve` is the one way to get an entry, for
either kind of name.
"""

from __future__ import annotations

from trainables.arch_record import TIMM_PREFIX, Arch
from trainables.errors import UserError

ARCHS: dict[str, Arch] = {}


def register(arch: Arch) -> Arch:
    ARCHS[arch.name] = arch
    return arch


register(Arch(
    "inception_v3", "Inception_V3_Weights.IMAGENET1K_V1", 299, 299,
    heads=("fc", "AuxLogits.fc"), gradcam_layer="Mixed_7c", min_input_size=299,
    # transform_input re-normalises ImageNet-normalised input to the [-1, 1] scaling these
    # weights were trained with; torchvision turns it on only when pretrained. Explicit here, so
    # every regime sees the same input normalisation.
    build_kwargs={"transform_input": True, "aux_logits": True},
    scratch_kwargs={"init_weights": True}, peak_memory_gb=0.9, forward_gflop=11.42))
register(Arch(
    "densenet161", "DenseNet161_Weights.IMAGENET1K_V1", 224, 256,
    heads=("classifier",), gradcam_layer="features", feature_node="flatten", tail="classifier",
    peak_memory_gb=1.7, forward_gflop=15.45))
register(Arch(
    "resnet152", "ResNet152_Weights.IMAGENET1K_V1", 224, 256,
    heads=("fc",), gradcam_layer="layer4", feature_node="flatten", tail="fc", peak_memory_gb=1.6,
    forward_gflop=23.02))
register(Arch(
    "resnet18", "ResNet18_Weights.IMAGENET1K_V1", 224, 256,
    heads=("fc",), gradcam_layer="layer4", feature_node="flatten", tail="fc", peak_memory_gb=0.3,
    forward_gflop=3.63))
register(Arch(
    "vgg11_bn", "VGG11_BN_Weights.IMAGENET1K_V1", 224, 256,
    heads=("classifier.6",), gradcam_layer="features", feature_node="flatten", tail="classifier",
    peak_memory_gb=2.0, forward_gflop=15.21))
register(Arch(
    "squeezenet1_0", "SqueezeNet1_0_Weights.IMAGENET1K_V1", 224, 256,
    heads=("classifier.1",), gradcam_layer="features", feature_node="features.12.cat",
    tail="classifier", peak_memory_gb=0.3, forward_gflop=1.47))
register(Arch(
    "mobilenet_v2", "MobileNet_V2_Weights.IMAGENET1K_V1", 224, 256,
    heads=("classifier.1",), gradcam_layer="features.18", feature_node="flatten",
    tail="classifier", peak_memory_gb=0.5, in_study=False, forward_gflop=0.6))

STUDY_ARCHS: tuple[str, ...] = tuple(a.name for a in ARCHS.values() if a.in_study)


def source_of(name: str) -> str:
    """"study" for this table's entries, "timm" for `timm/...` names, else "torchvision"."""
    if name in ARCHS:
        return "study"
    return "timm" if name.startswith(TIMM_PREFIX) else "torchvision"


def arch_slug(name: str) -> str:
    """The name as one path component (`timm/convnext_atto` -> `timm-convnext_atto`)."""
    return name.replace("/", "-")


def resolve(name: str, weights: str = "") -> Arch:
    """The entry for `name` with `weights` ("": the entry's own): the table's (no model library
    imported), else derived from torchvision or timm (cached per process). Refuses unknown
    names, and other weights for a study entry, naming the choices."""
    if name in ARCHS:
        arch = ARCHS[name]
        if weights and weights != arch.weights:
            raise UserError(f"weights {weights!r}: {name} is one of the study's entries and loads "
                            f"{arch.weights}")
        return arch
    problem = arch_problem(name)
    if problem:
        raise UserError(problem)
    from trainables.derived import derive

    return derive(name, weights or None)


def arch_problem(name: str) -> str | None:
    """Why `name` is not an architecture, or None. The table's names import no model library."""
    if name in ARCHS:
        return None
    if not isinstance(name, str) or not name:
        return (f"--arch {name!r} is unknown; choose from {', '.join(ARCHS)}, any torchvision "
                "classifier or timm/<model>")
    from trainables.derived import import_timm, torchvision_names

    try:
        if name.startswith(TIMM_PREFIX):
            base = name[len(TIMM_PREFIX):].partition(".")[0]
            timm = import_timm()
            if timm.is_model(base):
                return None
            close = timm.list_models(f"*{base[:6]}*")[:8] if base else []
            hint = f" (similar: {', '.join(TIMM_PREFIX + c for c in close)})" if close else ""
            return f"--arch {name!r}: timm has no model {base!r}{hint}; list them with timm.list_models()"
    except UserError as exc:  # timm not installed
        return f"--arch {name}: {exc}"
    names = torchvision_names()
    if name in names:
        return None
    return (f"--arch {name!r} is unknown: not one of the study's entries ({', '.join(ARCHS)}), not "
            f"a torchvision classifier (torchvision.models.list_models(module=torchvision.models): "
            f"{', '.join(names[:6])}, ...), and not timm/<model>")


def describe(arch: Arch) -> list[str]:
    """What --dry-run prints about an entry: where it comes from and how it was derived."""
    head = f"{arch.name}: {source_of(arch.name)}"
    if arch.source != "study":
        head += f" ({arch.library_name}, weights {arch.weights or 'none'})"
    return [head, *(f"  {n}" for n in arch.notes)]
