"""The README's plugin guide, followed as written: from the folder holding ``tagteller-leaves/``,
``--install-to`` lands the model exactly where the plugin reads it (an editable install runs the
package from that folder), and ``train`` warns about a target the domain never reads."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from tagteller import Domain
from tagteller.cli.train import install_target_warning

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "docs" / "examples" / "domain_plugin"


def guide_commands() -> list[list[str]]:
    """The shell commands of the guide's "Then:" block, split like a shell would."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Write a domain plugin"):]
    block = re.search(r"Then, from the folder.*?```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def test_guide_installs_the_model_where_the_plugin_reads_it(tmp_path, monkeypatch):
    commands = guide_commands()
    [pip_plugin] = [c for c in commands if c[:2] == ["pip", "install"] and any("tagteller-leaves" in a for a in c)]
    assert "-e" in pip_plugin  # editable: the package runs from the folder train writes into
    plugin_dir = tmp_path / pip_plugin[-1]
    shutil.copytree(EXAMPLE, plugin_dir, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    [train] = [c for c in commands if c[:2] == ["tagteller", "train"]]
    install_to = train[train.index("--install-to") + 1]

    # What the editable install imports: the package in tagteller-leaves/, run from there.
    code = ("import tagteller_leaves\nfound = []\ntagteller_leaves.register_domains(found.append)\n"
            "print(found[0].model_path.resolve())")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(plugin_dir), "PATH": "/usr/bin:/bin"}, timeout=60)
    model_path = Path(out.stdout.strip())
    monkeypatch.chdir(tmp_path)  # where the guide runs `tagteller train`
    assert (tmp_path / install_to).resolve() == model_path
    domain = Domain(name="leaves", description="d", labels=("green", "yellow", "red"), model_path=model_path)
    assert install_target_warning(domain, Path(install_to)) is None


def test_train_warns_when_install_to_is_not_the_domains_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model_path = tmp_path / "tagteller-leaves" / "tagteller_leaves" / "leaves.onnx"
    domain = Domain(name="leaves", description="d", labels=("a", "b"), model_path=model_path)
    warning = install_target_warning(domain, Path("tagteller_leaves/leaves.onnx"))  # the guide's old path
    assert warning and str(model_path) in warning and "will not use it" in warning
    assert install_target_warning(Domain(name="x", description="d", labels=("a", "b")), Path("m.onnx")) is None
