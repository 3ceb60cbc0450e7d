"""Names that become paths are validated first: domain and label names from plugins, model files,
CSV manifests and the command line. Each way out of a folder (``..``, a separator, an absolute
path, NUL, an empty name, a trailing newline) is tried and refused with a one-line reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

import tagteller
from tagteller import CsvManifestLayout, Domain, FolderLayout, plugins
from tagteller.cli import build_app
from tagteller.errors import InvalidNameError
from tagteller.names import normalize_label, validate_domain_name, validate_label, validate_labels
from tagteller.paths import data_dir, feedback_dir, installed_model_path, runs_dir

#: (bad name, words of the reason) refused as a domain name *and* as a label
ESCAPES = [
    ("", "is empty"),
    ("..", "contains '..'"),
    (".", "contains '..'"),
    ("../evil", "contains a path separator"),
    ("..\\evil", "contains a path separator"),
    ("a/b", "contains a path separator"),
    ("/etc/passwd", "contains a path separator"),
    ("C:\\Windows", "contains a path separator"),
    ("a\x00b", "contains a NUL byte"),
    ("ok..ok", "contains '..'"),
]

BAD_DOMAINS = ESCAPES + [
    ("shoes\n", "is invalid"),  # "$" in a regex matches before a final newline: fullmatch does not
    ("Shoes", "is invalid"),
    ("-shoes", "is invalid"),
    ("shoe s", "is invalid"),
    ("x" * 65, "is invalid"),
    (None, "must be a string, got NoneType"),
    (b"shoes", "must be a string, got bytes"),
]

BAD_LABELS = ESCAPES + [
    ("red\n", "is invalid"),
    (" red", "is invalid"),
    ("red ", "is invalid"),
    (".hidden", "is invalid"),
    ("-rf", "is invalid"),
    ("tab\there", "is invalid"),
    ("right\u202eleft", "is invalid"),  # right-to-left override: shows a different name than it is
    ("a\uff0fb", "is invalid"),  # fullwidth solidus: looks like a slash
    ("x" * 65, "is invalid"),
    (7, "must be a string, got int"),
]


@pytest.mark.parametrize(("name", "words"), BAD_DOMAINS, ids=repr)
def test_bad_domain_name_is_refused(name, words):
    with pytest.raises(InvalidNameError, match=None) as info:
        validate_domain_name(name)
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("name", "words"), BAD_LABELS, ids=repr)
def test_bad_label_is_refused(name, words):
    with pytest.raises(InvalidNameError) as info:
        validate_label(name)
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["shoes", "clothing-tags", "a1_b", "x" * 64])
def test_good_domain_names_pass(name):
    assert validate_domain_name(name) == name


@pytest.mark.parametrize("name", ["t-shirt", "Nike Air Max", "C++", "v1.2", "café", "ankle_boot", "x" * 64])
def test_good_labels_pass(name):
    assert validate_label(name) == name


@pytest.mark.parametrize(("name", "words"), [
    ("nіke", "mixes Latin and Cyrillic letters ('і' is Cyrillic)"),  # a Cyrillic i
    ("Ρuma", "mixes Greek and Latin letters"),  # a Greek capital rho
    ("red.", "ends with '.'"),
    ("CON", "device name Windows reserves"),
    ("con", "device name Windows reserves"),
    ("Aux.jpg", "device name Windows reserves"),
    ("LPT9", "device name Windows reserves"),
    ("COM¹", "device name Windows reserves"),
])
def test_confusable_and_windows_hostile_labels_are_refused(name, words):
    with pytest.raises(InvalidNameError) as info:
        validate_label(name)
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["con", "nul", "com1"])
def test_device_names_are_no_domain_names(name):
    with pytest.raises(InvalidNameError, match="device name"):
        validate_domain_name(name)


@pytest.mark.parametrize(("typed", "label"), [("ｎｉｋｅ", "nike"), ("ﬁsh", "fish"), ("COM", "COM"),
                                               ("Nike Air", "Nike Air"), ("T恤", "T恤"), ("ナイキ Air", "ナイキ Air"),
                                               ("conga", "conga"), ("Nike Air 2.0", "Nike Air 2.0")])
def test_typed_labels_are_nfkc_normalised_and_one_script_mixes_pass(typed, label):
    assert normalize_label(typed) == label


def test_normalising_cannot_sneak_a_separator_in():
    with pytest.raises(InvalidNameError, match="path separator"):
        normalize_label("a\uff0fb")  # a fullwidth solidus becomes "/"


@pytest.mark.parametrize(("labels", "words"), [
    ("red", "must be a list"),
    (None, "must be a list"),
    (["red"], "at least two labels"),
    (["red", "green", "red"], "'red' appears twice"),
    (["red", "../green"], "contains a path separator"),
])
def test_bad_label_lists_are_refused(labels, words):
    with pytest.raises(InvalidNameError, match=None) as info:
        validate_labels(labels)
    assert words in str(info.value)


# -- names that become paths --------------------------------------------------------------------

@pytest.mark.parametrize("make_path", [installed_model_path, runs_dir, feedback_dir])
@pytest.mark.parametrize(("name", "words"), [n for n in ESCAPES if n[0]], ids=repr)
def test_paths_refuse_escaping_domain_names(make_path, name, words):
    with pytest.raises(InvalidNameError, match=None) as info:
        make_path(name)
    assert words in str(info.value)


@pytest.mark.parametrize("make_path", [installed_model_path, runs_dir, feedback_dir])
def test_paths_of_good_names_stay_inside_the_data_folder(make_path):
    path = make_path("shoes").resolve()
    assert path.is_relative_to(data_dir().resolve()) and path.name.startswith("shoes")


@pytest.mark.parametrize(("field", "value", "words"), [
    ("name", "../evil", "contains a path separator"),
    ("name", "", "is empty"),
    ("labels", ("red", "../../etc"), "contains a path separator"),
    ("labels", ("red", "/abs"), "contains a path separator"),
    ("labels", ("red", "nul\x00"), "NUL byte"),
    ("labels", ("red", ""), "is empty"),
])
def test_domain_refuses_bad_names_when_a_plugin_declares_it(field, value, words):
    kwargs = {"name": "socks", "description": "Sock pattern", "labels": ("plain", "striped"), field: value}
    with pytest.raises(InvalidNameError, match=None) as info:
        Domain(**kwargs)
    assert words in str(info.value)


def test_plugin_declaring_a_bad_name_is_skipped_and_others_work(capsys):
    class EscapingPlugin:
        @tagteller.hookimpl
        def register_domains(self, register):
            register(Domain(name="socks", description="Socks", labels=("plain", "striped")))
            register(Domain(name="../../escape", description="Escape", labels=("a", "b")))

    plugins.register_plugin(EscapingPlugin(), "escaping")
    found = plugins.domains()
    assert "shoes" in found and "socks" not in found  # nothing of a hook that raised is kept
    assert not any("escape" in name for name in found)
    [failure] = [f for f in plugins.failures if f.plugin == "escaping"]
    assert failure.stage == "register_domains" and "'../../escape' contains a path separator" in failure.error
    assert "warning: plugin 'escaping' failed in register_domains" in capsys.readouterr().err


# -- names from datasets ------------------------------------------------------------------------

def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (200, 10, 10)).save(path)
    return path


@pytest.fixture
def manifest_folder(tmp_path) -> Path:
    """``data/`` with two good images, plus an image *outside* it that rows try to reach."""
    data = tmp_path / "data"
    _image(data / "a.png")
    _image(data / "sub" / "b.png")
    _image(tmp_path / "outside.png")
    (data / "link-out.png").symlink_to(tmp_path / "outside.png")
    return data


def _load_rows(folder: Path, *rows: str):
    (folder / "manifest.csv").write_text("path,label\na.png,red\nsub/b.png,blue\n" + "".join(r + "\n" for r in rows),
                                         encoding="utf-8")
    dataset = CsvManifestLayout().load(folder)
    assert sorted(s.key for s in dataset.samples) == ["a.png", "sub/b.png"]
    [(where, reason)] = dataset.skipped
    assert where == "manifest.csv:4"
    return reason


@pytest.mark.parametrize(("row", "words"), [
    ("../outside.png,red", "outside the dataset folder"),
    ("sub/../../outside.png,red", "outside the dataset folder"),
    ("{outside},red", "outside the dataset folder"),  # absolute path to a real image
    ("/etc/passwd,red", "outside the dataset folder"),
    ("link-out.png,red", "outside the dataset folder"),  # a symlink inside pointing out
    (",red", "outside the dataset folder"),  # empty path: the folder itself
    ("a.png,../evil", "contains a path separator"),
    ("a.png,/root", "contains a path separator"),
    ("a.png,..", "contains '..'"),
    ("a.png,", "is empty"),
    ("a.png,bad\x00label", "NUL byte"),
])
def test_csv_manifest_row_escaping_the_folder_is_skipped(manifest_folder, row, words):
    reason = _load_rows(manifest_folder, row.format(outside=manifest_folder.parent / "outside.png"))
    assert words in reason


def test_csv_manifest_path_with_nul_is_skipped(manifest_folder):
    assert "outside the dataset folder" in _load_rows(manifest_folder, "a\x00.png,red")


def test_folder_layout_skips_label_folders_with_bad_names(tmp_path):
    _image(tmp_path / "red" / "1.png")
    _image(tmp_path / "blue" / "1.png")
    _image(tmp_path / " spaced" / "1.png")
    _image(tmp_path / "-rf" / "1.png")
    dataset = FolderLayout().load(tmp_path)
    assert dataset.labels == ("blue", "red")
    assert sorted(where for where, _ in dataset.skipped) == [" spaced", "-rf"]


# -- names typed on the command line ------------------------------------------------------------

@pytest.fixture
def photo(tmp_path) -> Path:
    return _image(tmp_path / "photo.png")


def _files_under(folder: Path) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs}


@pytest.mark.parametrize(("args", "words"), [
    (["scan", "--domain", "../../etc", "PHOTO"], "unknown domain '../../etc'"),
    (["scan", "--domain", "shoes", "--model", "MODEL", "--correct", "../evil", "PHOTO"], "contains a path separator"),
    (["feedback", "list", "--domain", "../evil"], "contains a path separator"),
    (["feedback", "stats", "--domain", "/abs"], "contains a path separator"),
    (["prices", "set", "--domain", "shoes", "../evil", "1", "2"], "contains a path separator"),
    (["prices", "set", "--domain", "shoes", "nul\x00", "1", "2"], "NUL byte"),
])
def test_cli_refuses_escaping_names_and_writes_nothing(tmp_path, photo, isolated_home, args, words):
    from tests.builders import colour_model

    model = colour_model(tmp_path / "shoes.onnx", domain="shoes", labels=("adidas", "converse", "nike"))
    before = _files_under(tmp_path.parent)
    args = [str(photo) if a == "PHOTO" else str(model) if a == "MODEL" else a for a in args]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and words in line
    assert _files_under(tmp_path.parent) == before
    assert not any(".." in p or "evil" in p for p in _files_under(isolated_home))


def test_portable_paths_keep_no_absolute_path_of_the_building_machine(tmp_path):
    from tagteller.paths import portable_paths

    repo = tmp_path / "work" / "main"
    line = (f"tagteller train --domain shoes {tmp_path}/work/shared/datasets/shoes --install-to {repo}/models/shoes.onnx "
            f"--unknown-data books={tmp_path}/work/shared/datasets/book-covers --weights /opt/w/lite0.pth --epochs 3")
    assert portable_paths(line, repo) == (
        "tagteller train --domain shoes ../shared/datasets/shoes --install-to models/shoes.onnx "
        "--unknown-data books=../shared/datasets/book-covers --weights .../lite0.pth --epochs 3")
    assert portable_paths("no paths here, a/b relative", repo) == "no paths here, a/b relative"
