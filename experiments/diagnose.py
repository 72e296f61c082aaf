"""``ntk-limits diagnose``: does the NTK describe *your* network? A report from one command.

Usage::

    ntk-limits diagnose my_models.py:make_resnet --data mnist5k --n 256 --steps 100
    ntk-limits diagnose my_pkg.nets:factory --data arrays.npz --optimizer adam --lr 1e-3

``MODULE:FACTORY`` names a Python file (``path/to/file.py``) or an importable module, and a
function in it. The factory is called with no arguments, or with ``key`` (a
``jax.random.key(seed)``) if it takes one, and returns one of:

* ``(apply_fn, params)`` or ``(apply_fn, params, kernel_fn)``: ``apply_fn(params, x) ->
  (n, k)``; ``kernel_fn(x1, x2, "ntk")`` an infinite-width kernel of the same network;
* ``(module, input_shape)``: a flax Linen module (initialised here from ``key``; a
  ``train`` argument of its ``__call__`` selects BatchNorm's mode, ``--batchnorm``) or an
  NNX module (its own parameters); ``input_shape`` is one example's shape, e.g.
  ``(28, 28, 1)``, and the data are reshaped to it.

``--data`` is a packaged data set (``ntk-limits datasets``; paper sets from the data
folder) or an ``.npz`` file with ``x`` and integer ``y`` (optionally ``x_test``,
``y_test``; else the last ``--n-test`` examples are held out). Targets are one-hot, the
loss is the MSE. The workdir gets ``DIAGNOSIS.md``, ``diagnosis.json`` and two figures
(``steps.png``: ``C′`` and the kernel change over the steps; ``spectrum.png``: the Gram
spectrum at initialisation). The library call behind it is
:func:`ntk_limits.regime.diagnose`.
"""

import importlib
import importlib.util
import inspect
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OPTIMIZERS", "load_factory", "load_data", "run", "write_report"]

OPTIMIZERS = ("gd", "ngd", "adam", "momentum")


class DiagnoseError(ValueError):
    """Bad input to ``ntk-limits diagnose``: one line, exit status 2."""


def _import(spec: str):
    """``MODULE:FACTORY`` -> the factory (a file path or a module name before the colon)."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise DiagnoseError(
            f"{spec!r} is not MODULE:FACTORY; allowed: e.g. my_models.py:make_net or "
            "my_pkg.nets:make_net"
        )
    if module_name.endswith(".py"):
        path = Path(module_name).expanduser()
        if not path.is_file():
            raise DiagnoseError(f"no file {str(path)!r}; allowed: a Python file that exists")
        name = f"_ntk_limits_user_{abs(hash(str(path.resolve())))}"
        loader_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.path.insert(0, str(path.resolve().parent))  # its own sibling imports
        try:
            loader_spec.loader.exec_module(module)
        except Exception as e:
            raise DiagnoseError(f"{path} failed to import: {type(e).__name__}: {e}") from e
        finally:
            sys.path.remove(str(path.resolve().parent))
    else:
        try:
            module = importlib.import_module(module_name)
        except Exception as e:
            raise DiagnoseError(
                f"module {module_name!r} failed to import ({type(e).__name__}: {e}); allowed: "
                "an importable module or a path ending in .py"
            ) from e
    factory = getattr(module, attr, None)
    if not callable(factory):
        found = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise DiagnoseError(
            f"{module_name} has no function {attr!r}; allowed: {', '.join(sorted(found)) or 'none'}"
        )
    return factory


def load_factory(spec: str, *, seed: int = 0, batchnorm: str = "batch"):
    """``(apply_fn, params, kernel_fn | None, input_shape | None, description)`` from a factory.

    Args:
      spec: ``MODULE:FACTORY``.
      seed: key of the factory (if it takes ``key``) and of a Linen module's init.
      batchnorm: ``"batch"`` (batch statistics, the training mode) or ``"running"`` (the
        running averages) for a Linen module with state beyond its parameters.
    """
    import jax

    from ntk_limits import regime

    factory = _import(spec)
    key = jax.random.key(seed)
    try:
        takes_key = "key" in inspect.signature(factory).parameters
        out = factory(key=key) if takes_key else factory()
    except Exception as e:
        raise DiagnoseError(f"{spec}() failed: {type(e).__name__}: {e}") from e
    if not isinstance(out, tuple) or len(out) not in (2, 3):
        raise DiagnoseError(
            f"{spec}() returned {type(out).__name__}; allowed: (apply_fn, params), "
            "(apply_fn, params, kernel_fn) or (flax module, input_shape)"
        )
    first = out[0]
    if _is_linen(first) or _is_nnx(first):
        if len(out) != 2 or not _is_shape(out[1]):
            raise DiagnoseError(
                f"{spec}() returned a flax module without an input shape; allowed: "
                "(module, input_shape) with input_shape a tuple of positive ints"
            )
        shape = tuple(int(s) for s in out[1])
        if _is_nnx(first):
            apply_fn, params = regime.from_nnx(first)
            return apply_fn, params, None, shape, f"flax NNX {type(first).__name__}"
        return (*_linen(first, shape, key, batchnorm), None, shape, _linen_text(first, batchnorm))
    if not callable(first):
        raise DiagnoseError(
            f"{spec}() returned {type(first).__name__} first; allowed: apply_fn or a flax module"
        )
    kernel_fn = out[2] if len(out) == 3 else None
    return first, out[1], kernel_fn, None, f"apply_fn {getattr(first, '__name__', 'function')}"


def _is_linen(obj) -> bool:
    try:
        import flax.linen as nn
    except ImportError:  # pragma: no cover - flax is a dependency
        return False
    return isinstance(obj, nn.Module)


def _is_nnx(obj) -> bool:
    try:
        from flax import nnx
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, nnx.Module)


def _is_shape(obj) -> bool:
    return (
        isinstance(obj, tuple | list)
        and len(obj) > 0
        and all(isinstance(s, int | np.integer) and s > 0 for s in obj)
    )


def _takes_train(module) -> bool:
    return "train" in inspect.signature(module.__call__).parameters


def _linen(module, shape, key, batchnorm: str):
    import jax.numpy as jnp

    from ntk_limits import regime

    kwargs = {"train": False} if _takes_train(module) else {}
    try:
        variables = module.init(key, jnp.zeros((1, *shape), jnp.float32), **kwargs)
    except Exception as e:
        raise DiagnoseError(
            f"{type(module).__name__}.init on inputs of shape {(1, *shape)} failed: "
            f"{type(e).__name__}: {e}"
        ) from e
    has_state = any(name != "params" for name in variables)
    if has_state and not _takes_train(module):
        state = ", ".join(n for n in variables if n != "params")
        raise DiagnoseError(
            f"{type(module).__name__} has state ({state}) but its __call__ takes no 'train' "
            "argument; allowed: a module with "
            "__call__(self, x, train: bool) for BatchNorm"
        )
    return regime.from_linen(module, variables, train=batchnorm == "batch")


def _linen_text(module, batchnorm: str) -> str:
    mode = "batch statistics" if batchnorm == "batch" else "running averages"
    return f"flax Linen {type(module).__name__} (BatchNorm, if any: {mode})"


def load_data(name: str, *, n: int, n_test: int, data_dir: str | None, seed: int = 0):
    """``(x, y, x_test, y_test, num_classes, description)``; ``name`` a data set or ``.npz``."""
    if name.endswith(".npz"):
        return _npz(name, n, n_test)
    from ntk_limits import data

    if name not in data.DATASETS:
        raise DiagnoseError(
            f"unknown data {name!r}; allowed: a .npz file or one of {', '.join(data.DATASETS)}"
        )
    train = data.load(name, split="train", data_dir=data_dir, seed=seed)
    test = data.load(name, split="test", data_dir=data_dir, seed=seed)
    for split, size in (("train", (n, len(train.y))), ("test", (n_test, len(test.y)))):
        if size[0] > size[1]:
            raise DiagnoseError(
                f"{name} has {size[1]} {split} examples, asked for {size[0]}; allowed: at most "
                f"{size[1]}"
            )
    train = data.subset(train, n, seed=seed)
    test = data.subset(test, n_test, seed=seed)
    return train.x, train.y, test.x, test.y, train.num_classes, train.name


def _npz(path: str, n: int, n_test: int):
    if not os.path.isfile(path):
        raise DiagnoseError(f"no file {path!r}; allowed: an .npz file that exists")
    try:
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:
        raise DiagnoseError(f"{path} is not a readable .npz file ({type(e).__name__})") from e
    if "x" not in arrays or "y" not in arrays:
        raise DiagnoseError(f"{path} holds {sorted(arrays)}; allowed: arrays x and y")
    x, y = arrays["x"].astype(np.float32), arrays["y"]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or len(y) != len(x) or y.min() < 0:
        raise DiagnoseError(f"{path}: y must be non-negative integer labels, one per row of x")
    if "x_test" in arrays:
        xt, yt = arrays["x_test"].astype(np.float32), arrays.get("y_test")
        if yt is None or len(yt) != len(xt):
            raise DiagnoseError(f"{path}: x_test needs y_test of the same length")
    else:
        if len(x) < n + n_test:
            raise DiagnoseError(
                f"{path} has {len(x)} examples; allowed: at least n + n_test = {n + n_test}"
            )
        x, y, xt, yt = x[:-n_test], y[:-n_test], x[-n_test:], y[-n_test:]
    if len(x) < n or len(xt) < n_test:
        raise DiagnoseError(
            f"{path} has {len(x)} training and {len(xt)} test examples, asked for {n} and "
            f"{n_test}; allowed: at most that many"
        )
    k = int(max(y.max(), np.max(yt))) + 1
    return x[:n], y[:n], xt[:n_test], yt[:n_test], k, f"{os.path.basename(path)} (.npz)"


def _training(optimizer: str, lr: float | None, steps: int, damping: float):
    import optax

    from ntk_limits import regime

    if optimizer == "gd":
        return regime.gd(lr, steps)
    if optimizer == "ngd":
        return regime.ngd(1.0 if lr is None else lr, steps, damping=damping)
    if lr is None:
        raise DiagnoseError(f"--optimizer {optimizer} needs --lr; allowed: a positive number")
    if optimizer == "adam":
        return regime.optax_training(optax.adam(lr), steps)
    return regime.optax_training(optax.sgd(lr, momentum=0.9), steps)


def run(args) -> tuple[Path, Any]:
    """Runs the diagnosis the parsed ``args`` describe and writes its report; returns both."""
    import jax
    import jax.numpy as jnp

    from ntk_limits import regime
    from ntk_limits_experiments import memory

    train = _training(args.optimizer, args.lr, args.steps, args.damping)
    apply_fn, params, kernel_fn, shape, model_text = load_factory(
        args.factory, seed=args.seed, batchnorm=args.batchnorm
    )
    x, y, xt, yt, k, data_text = load_data(
        args.data, n=args.n, n_test=args.n_test, data_dir=args.data_dir, seed=args.seed
    )
    if shape is not None:
        x, xt = _reshape(x, shape), _reshape(xt, shape)
    elif args.flatten:
        x, xt = x.reshape(len(x), -1), xt.reshape(len(xt), -1)
    try:
        out = jax.eval_shape(apply_fn, params, jnp.asarray(x))
    except Exception as e:
        raise DiagnoseError(
            f"the model fails on inputs of shape {x.shape} ({type(e).__name__}: {e}); allowed: "
            "inputs the model takes (see --flatten, or return an input_shape)"
        ) from e
    if len(getattr(out, "shape", ())) != 2 or out.shape[1] != k:
        raise DiagnoseError(
            f"the model gives outputs of shape {getattr(out, 'shape', None)} for {data_text} with "
            f"{k} classes; allowed: (n, {k}), one output per class"
        )
    print(f"diagnosing {model_text} on {data_text}: n={len(x)}, {args.steps} steps of "
          f"{args.optimizer}", file=sys.stderr)  # fmt: skip
    try:
        result = regime.diagnose(
            apply_fn, params, jnp.asarray(x), jnp.asarray(y), train=train,
            x_test=jnp.asarray(xt), kernel_fn=kernel_fn, precision=args.precision,
            checkpoints=args.checkpoints, max_bytes=memory.available_bytes(),
        )  # fmt: skip
    except regime.DiagnosisTooLarge as e:
        raise DiagnoseError(str(e)) from e
    context = {"model": model_text, "factory": args.factory, "data": data_text,
               "optimizer": args.optimizer, "lr": args.lr, "seed": args.seed}  # fmt: skip
    return write_report(result, args.workdir, context), result


def _reshape(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if int(np.prod(x.shape[1:])) != int(np.prod(shape)):
        raise DiagnoseError(
            f"inputs of shape {x.shape[1:]} cannot be reshaped to the model's input_shape "
            f"{shape}; allowed: an input_shape with {int(np.prod(x.shape[1:]))} numbers"
        )
    return x.reshape(len(x), *shape)


def _json_value(v):
    if isinstance(v, np.ndarray):
        return [_json_value(a) for a in v.tolist()] if v.ndim else _json_value(v.item())
    if isinstance(v, list | tuple):
        return [_json_value(a) for a in v]
    if isinstance(v, dict):
        return {str(a): _json_value(b) for a, b in v.items()}
    if isinstance(v, float | np.floating):
        return float(v) if np.isfinite(v) else None
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, int | np.integer):
        return int(v)
    return v


def _record(result, context: dict) -> dict:
    fields = {k: v for k, v in result._asdict().items() if k not in ("final_params",)}
    fields["thresholds"] = result.thresholds._asdict()
    return {"context": context, **{k: _json_value(v) for k, v in fields.items()}}


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    v = float(v)
    return f"{v:.3g}" if np.isfinite(v) else ("∞" if np.isinf(v) else "n/a")


def _markdown(result, context: dict) -> str:
    from ntk_limits_experiments.common import markdown_table

    th = result.thresholds
    rows = [
        [int(s), _fmt(c), "yes" if inside else "no", _fmt(dist), _fmt(jc), _fmt(kc), _fmt(le)]
        for s, c, inside, dist, jc, kc, le in zip(
            result.steps, result.c_prime, result.inside_radius, result.param_distance,
            result.jacobian_change, result.kernel_change, result.linearization_error,
            strict=True,
        )
    ]  # fmt: skip
    table = markdown_table(
        ["step", "C′", "inside R", "‖θ−θ₀‖", "‖ΔJ‖₂/‖J₀‖₂", "kernel change", "lin. error"], rows
    )
    checks = markdown_table(
        ["check", "result", "rule"],
        [
            ["full rank", _status(result.checks["full_rank"]),
             f"λ_min(K₀) above n·k·eps·λ_max ({result.precision})"],
            ["stable Jacobian", _status(result.checks["stable_jacobian"]),
             f"C′ < {th.c_prime:g} at every checkpoint inside R (Zhang et al. 2019)"],
            ["lazy kernel", _status(result.checks["lazy_kernel"]),
             f"kernel change < {th.kernel_change:g} (a convention)"],
            ["linear", _status(result.checks["linear"]),
             f"linearisation error < {th.linearization_error:g} on {result.evaluated_on}"],
        ],
    )  # fmt: skip
    spectrum = (
        f"λ_min = {_fmt(result.lambda_min)}, λ_max = {_fmt(result.lambda_max)}, condition "
        f"number {_fmt(result.condition_number)}, effective rank {_fmt(result.effective_rank)} "
        f"of {result.n * result.outputs}; floor {_fmt(result.lambda_floor)} "
        f"({'resolved' if result.lambda_min_resolved else 'unresolved'}); R = "
        f"{_fmt(result.radius)}"
    )
    infinite = ""
    if result.infinite_kernel_distance is not None:
        infinite = (
            f"\n## Infinite width\n\n‖K̄₀ − Θ∞‖_F/‖Θ∞‖_F = {_fmt(result.infinite_kernel_distance)}; "
            f"trained vs kernel-regime predictions: {_fmt(result.infinite_prediction_gap)} of "
            "the predictions' own change.\n"
        )
    lr = context["lr"] if context["lr"] is not None else "auto"
    return (
        f"# Does the NTK describe this network?\n\n**{result.verdict}**\n\n{result.summary}\n\n"
        f"- model: {context['model']} (`{context['factory']}`), {result.num_params:,} parameters\n"
        f"- data: {context['data']}, n = {result.n} training inputs, k = {result.outputs} "
        f"outputs\n- training: {context['optimizer']} (η = {lr}), {len(result.losses) - 1} "
        f"full-batch steps, MSE loss {_fmt(result.losses[0])} → {_fmt(result.losses[-1])}\n"
        f"- time: {result.seconds:.1f} s\n\n## Checks\n\n{checks}\n## Gram at initialisation\n\n"
        f"{spectrum}\n\n![spectrum](spectrum.png)\n\n## Along the training\n\n{table}\n"
        f"![C′ and kernel change](steps.png)\n{infinite}\n## What the numbers rest on\n\n"
        + "".join(f"- {note}\n" for note in result.notes)
    )


def _status(value) -> str:
    return {True: "holds", False: "fails", None: "undecided"}[value]


def _figures(result, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ntk_limits_experiments.common import save_figure

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    bound = "" if result.lambda_min_resolved else " (lower bound: λ_min unresolved)"
    a.semilogy(result.steps, np.maximum(result.c_prime, 1e-12), "o-", label=f"C′(t){bound}")
    a.axhline(result.thresholds.c_prime, color="k", ls="--", lw=1, label="theory: 1/2")
    out = ~result.inside_radius
    if out.any():
        a.plot(result.steps[out], result.c_prime[out], "x", color="r", label="outside R")
    a.set(xlabel="step", ylabel="C′", title="stable-Jacobian constant")
    a.legend(fontsize=8)
    b.plot(result.steps, 100 * result.kernel_change, "o-", label="kernel change")
    b.plot(result.steps, 100 * result.linearization_error, "s-", label="linearisation error")
    b.axhline(100 * result.thresholds.kernel_change, color="k", ls="--", lw=1)
    b.set(xlabel="step", ylabel="%", title="laziness")
    b.legend(fontsize=8)
    fig.tight_layout()
    paths = [save_figure(fig, folder / "steps.png")]
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    eig = np.sort(result.eigenvalues)[::-1]
    ax.semilogy(np.arange(1, eig.size + 1), np.maximum(eig, 1e-300), lw=1.5, label="λ_i(K₀)")
    ax.axhline(result.lambda_floor, color="r", ls=":", lw=1, label=f"floor ({result.precision})")
    ax.set(xlabel="index", ylabel="eigenvalue", title="Gram spectrum at initialisation")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(save_figure(fig, folder / "spectrum.png"))
    plt.close(fig)
    return paths


def write_report(result, workdir: str | os.PathLike, context: dict) -> Path:
    """Writes ``DIAGNOSIS.md``, ``diagnosis.json`` and two figures into ``workdir``.

    Everything is written into a temporary folder beside ``workdir`` first and moved in
    file by file only when all of it was written, so a failure leaves no half report.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=workdir, prefix=".diagnosis-") as tmp:
        tmp = Path(tmp)
        _figures(result, tmp)
        (tmp / "diagnosis.json").write_text(
            json.dumps(_record(result, context), indent=1, allow_nan=False), encoding="utf-8"
        )
        (tmp / "DIAGNOSIS.md").write_text(_markdown(result, context), encoding="utf-8")
        for path in tmp.iterdir():
            os.replace(path, workdir / path.name)
    return workdir / "DIAGNOSIS.md"
