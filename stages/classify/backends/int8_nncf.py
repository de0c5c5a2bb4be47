"""Accuracy-controlled int8 for OpenVINO (NNCF): quantise every op NNCF can, then put ops back
into float, the most harmful first, until the top-1 agrees with the fp32 model on at least
``min_agreement`` of the calibration frames.

The metric is agreement with fp32 itself, so no labels are needed. It is measured exactly as
the backend runs the result: int8 kernels with the float remainder in fp32
(``INFERENCE_PRECISION_HINT: f32``). The CPU default on AMX/AVX-512 BF16 machines is bf16,
which costs about two points of agreement on the float remainder; a model tuned under one
precision and run under the other would miss its bound.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

log = logging.getLogger(__name__)

BATCH = 8
# ops put back into float at most: bounds the one-time cost when the bound cannot be reached
# (each step validates every calibration frame; a step that makes things worse re-ranks them all)
MAX_REVERTED = 30
# op types a FakeQuantize feeds into int8 kernels (NNCF's quantizable ops that appear in CNN exports)
QUANTIZABLE = {"Convolution", "GroupConvolution", "MatMul", "Add", "Multiply", "Subtract", "Divide",
               "Maximum", "Minimum", "AvgPool", "ReduceMean", "MVN", "Interpolate", "ConvolutionBackpropData"}


@dataclass(frozen=True)
class Int8Result:
    model: Any  # ov.Model
    agreement: float  # top-1 agreement with fp32 on the calibration frames, as the backend runs it
    quantized_ops: int  # ops NNCF quantised at first
    float_ops: list[str]  # those put back into float to reach the bound (OpenVINO friendly names)


def quantized_op_names(model: Any) -> set[str]:
    """Friendly names of the ops that take an int8 input: the first quantizable op reached from
    each FakeQuantize through reshapes, pads and other precision-agnostic ops (not through
    ShapeOf: the 'same'-padding arithmetic on shapes is not quantised)."""
    names: set[str] = set()
    seen: set[str] = set()
    todo = [op for op in model.get_ops() if op.get_type_name() == "FakeQuantize"]
    while todo:
        op = todo.pop()
        for out in op.outputs():
            for target in out.get_target_inputs():
                node = target.get_node()
                name = node.get_friendly_name()
                if node.get_type_name() in QUANTIZABLE:
                    names.add(name)
                elif name not in seen and node.get_type_name() not in ("Result", "FakeQuantize", "ShapeOf"):
                    seen.add(name)
                    todo.append(node)
    return names


def logits(compiled: Any, frames: np.ndarray) -> np.ndarray:
    request = compiled.create_infer_request()
    out = []
    for i in range(0, len(frames), BATCH):
        request.infer({0: frames[i:i + BATCH]})
        out.append(request.get_output_tensor(0).data.copy())
    return np.concatenate(out)


def top1(compiled: Any, frames: np.ndarray) -> np.ndarray:
    return logits(compiled, frames).argmax(1)


def quantize(fp32_onnx: Path, frames: np.ndarray, reference: np.ndarray, min_agreement: float,
             threads: int = 0, full_range: bool = False, validate_on: Optional[np.ndarray] = None) -> Int8Result:
    """int8 model of ``fp32_onnx`` whose top-1 matches ``reference`` (the fp32 top-1 of
    ``frames``) on at least ``min_agreement`` of ``frames``, with as many ops in int8 as that
    allows. ``validate_on``: indices of the frames the agreement is measured on (default all;
    `videoclf tune` passes the confident ones, every frame still calibrates). ``full_range``: 8-bit weights everywhere, for CPUs with VNNI/AMX; otherwise the first
    convolution gets 7-bit weights (NNCF's default fix for the saturation of older int8 code),
    which on efficientnet_lite0 costs ~8 points of agreement before any op goes back to float."""
    import tempfile

    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import (AdvancedAccuracyRestorerParameters,
                                                       AdvancedQuantizationParameters, OverflowFix)

    core = ov.Core()
    fp32 = core.read_model(str(fp32_onnx))
    f32 = {"INFERENCE_PRECISION_HINT": "f32", **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
    precisions: set[str] = set()

    def validate(compiled: Any, items: Iterable[int]) -> tuple[float, list[float]]:
        # NNCF compiles each candidate itself (nncf 3.4: with the f32 hint); record what it ran,
        # so that a change of its default is an error, not a silently different metric
        precisions.add(str(compiled.get_property("INFERENCE_PRECISION_HINT")))
        idx = np.fromiter(items, dtype=np.int64)
        out = logits(compiled, frames[idx])
        same = out.argmax(1) == reference[idx]
        return float(same.mean()), same.astype(np.float64).tolist()

    # the metric of the fp32 model itself (OpenVINO fp32 vs the torch reference: ~1.0); the
    # allowed drop is measured from there down to the bound
    checked = np.arange(len(frames)) if validate_on is None else np.asarray(validate_on, np.int64)
    initial = float(np.mean(top1(core.compile_model(fp32, "CPU", f32), frames[checked]) == reference[checked]))
    max_drop = max(0.0, initial - min_agreement)
    dataset = nncf.Dataset(range(len(frames)), lambda i: frames[i:i + 1])
    validation = dataset if validate_on is None else nncf.Dataset([int(i) for i in checked], lambda i: frames[i:i + 1])
    with tempfile.TemporaryDirectory(prefix="videoclf-int8-") as tmp:
        # the fully quantised model NNCF starts from is saved here: it says which ops were reverted
        restorer = AdvancedAccuracyRestorerParameters(intermediate_model_dir=tmp, max_num_iterations=MAX_REVERTED)
        overflow = OverflowFix.DISABLE if full_range else OverflowFix.FIRST_LAYER
        model = nncf.quantize_with_accuracy_control(
            fp32, dataset, validation, validate, max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE,
            subset_size=len(frames), advanced_quantization_parameters=AdvancedQuantizationParameters(
                overflow_fix=overflow), advanced_accuracy_restorer_parameters=restorer)
        first = core.read_model(str(Path(tmp) / "intermediate_model.xml"))
        initially_quantized = quantized_op_names(first)
    if precisions != {str(ov.Type.f32)}:
        from videoclf.core.errors import VideoclfError

        raise VideoclfError(f"int8 accuracy control validated in {sorted(precisions)}, not the fp32 the backend "
                            f"runs (nncf {nncf.__version__})")
    agreement = float(np.mean(top1(core.compile_model(model, "CPU", f32), frames[checked]) == reference[checked]))
    float_ops = sorted(initially_quantized - quantized_op_names(model))
    return Int8Result(model, agreement, len(initially_quantized), float_ops)


def onnx_node_name(ov_name: str) -> str:
    """OpenVINO's ONNX reader splits a biased Conv/Gemm into ``<node>/WithoutBiases`` + ``<node>``."""
    return ov_name.removesuffix("/WithoutBiases")


def quantize_onnx(fp32_onnx: Path, frames: np.ndarray, float_ops: list[str],
                  full_range: bool = False) -> tuple[Any, list[str]]:
    """QDQ ONNX for onnxruntime from NNCF's ONNX backend (the same range estimation, bias
    correction and weight range as the OpenVINO model), leaving unquantised the ops the
    OpenVINO accuracy control kept in float. Returns the model and the ONNX node names left in float."""
    import nncf
    import onnx
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    model = onnx.load(str(fp32_onnx))
    names = {node.name for node in model.graph.node}
    ignored = sorted({onnx_node_name(op) for op in float_ops} & names)
    missing = sorted({onnx_node_name(op) for op in float_ops} - names)
    if missing:
        log.warning("int8: %d float ops have no ONNX node of that name, quantised in onnxruntime: %s",
                    len(missing), ", ".join(missing))
    dataset = nncf.Dataset(range(len(frames)), lambda i: {"input": frames[i:i + 1]})
    overflow = OverflowFix.DISABLE if full_range else OverflowFix.FIRST_LAYER
    quantized = nncf.quantize(model, dataset, subset_size=len(frames),
                              ignored_scope=nncf.IgnoredScope(names=ignored, validate=False),
                              advanced_parameters=AdvancedQuantizationParameters(overflow_fix=overflow))
    return quantized, ignored


def quantize_plain(fp32_onnx: Path, frames: np.ndarray, full_range: bool = False) -> Int8Result:
    """Plain post-training int8 (no accuracy control): for random weights, which have no
    accuracy to keep, so ``weights: none`` speed tests get int8 in seconds."""
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    fp32 = ov.Core().read_model(str(fp32_onnx))
    dataset = nncf.Dataset(range(len(frames)), lambda i: frames[i:i + 1])
    overflow = OverflowFix.DISABLE if full_range else OverflowFix.FIRST_LAYER
    model = nncf.quantize(fp32, dataset, subset_size=len(frames),
                          advanced_parameters=AdvancedQuantizationParameters(overflow_fix=overflow))
    return Int8Result(model, float("nan"), len(quantized_op_names(model)), [])
