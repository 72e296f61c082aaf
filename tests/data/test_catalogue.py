"""The catalogue, its text form, and a light `import ntk_limits.data`."""

import subprocess
import sys
from pathlib import Path

from ntk_limits import data

ROOT = Path(__file__).resolve().parents[2]


def test_catalogue_rows(tmp_path):
    infos = data.catalogue(str(tmp_path))
    assert [i.name for i in infos] == list(data.DATASETS)
    by_name = {i.name: i for i in infos}
    for name in ("mnist5k", "digits", "iris", "wine", "breast_cancer"):
        info = by_name[name]
        assert info.kind == "embedded" and info.available and info.fetch_command == ""
    for name in ("mnist", "cifar10", "cifar100", "tiny_imagenet", "covertype", "letter"):
        info = by_name[name]
        assert info.kind == "paper" and not info.available
        assert info.fetch_command == f"ntk-limits datasets --fetch {name}"
    assert by_name["mnist5k"].used_by == ("rotated_mnist5k", "split_mnist5k", "permuted_mnist5k")
    assert by_name["cifar100"].used_by == ("split_cifar100",)
    assert by_name["iris"].used_by == ("bandit:iris",)
    assert all(i.licence and i.source and i.size for i in infos)
    assert not any(i.available for i in data.catalogue(None) if i.kind == "paper")


def test_every_stream_and_bandit_names_a_known_data_set():
    assert {d for d, _, _ in data.STREAMS.values()} <= set(data.DATASETS)
    assert set(data.BANDITS) <= set(data.DATASETS)


def test_format_catalogue(tmp_path):
    text = data.format_catalogue(data.catalogue(str(tmp_path)))
    lines = text.splitlines()
    assert lines[0].split() == ["name", "kind", "here", "size", "streams", "/", "bandits"]
    assert any(line.startswith("mnist5k ") and " yes " in line for line in lines)
    assert any(line.startswith("cifar10 ") and " no " in line for line in lines)
    assert "  ntk-limits datasets --fetch cifar10" in lines
    assert "--fetch mnist5k" not in text and not text.endswith("\n")


def test_import_is_light():
    code = (
        "import sys, ntk_limits.data as d; d.catalogue('/nonexistent');"
        "print(sorted(m for m in ('tensorflow_datasets', 'tensorflow', 'sklearn', 'pandas',"
        " 'mlxtend', 'PIL') if m in sys.modules))"
    )
    env = {"PYTHONPATH": f"{ROOT / 'src'}", "JAX_PLATFORMS": "cpu", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True)  # fmt: skip
    assert out.stdout.strip() == "[]"
