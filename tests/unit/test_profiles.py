"""onload-profile-to-configmap: OpenOnload profiles parsed (never run) into ConfigMaps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from onload_operator.profiles import ProfileError, ProfileReader, main, render

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "config" / "samples" / "profiles"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def read(path: Path, *search_path: Path) -> dict[str, str]:
    return ProfileReader(tuple(search_path)).read(path)


def test_both_onload_set_forms_comments_and_blank_lines(tmp_path: Path) -> None:
    profile = write(
        tmp_path / "p.opf",
        "# a comment\n\nonload_set EF_POLL_USEC 100000   # trailing comment\n  onload_set EF_TCP_FASTSTART_INIT=0\n",
    )
    assert read(profile) == {"EF_POLL_USEC": "100000", "EF_TCP_FASTSTART_INIT": "0"}


def test_values_with_equals_and_yaml_special_characters_survive(tmp_path: Path) -> None:
    profile = write(
        tmp_path / "p.opf",
        "onload_set EF_A=a=b=c\n"
        "onload_set EF_B 'key: value # not a comment'\n"
        'onload_set EF_C "- [x, {y}] & *z | \\"q\\" \\\\ \'s\'"\n'
        "onload_set EF_D yes\n"
        "onload_set EF_E ''\n"
        "onload_set EF_F 0x1f\n"
        "onload_set EF_G =lead\n",
    )
    variables = read(profile)
    assert variables == {
        "EF_A": "a=b=c",
        "EF_B": "key: value # not a comment",
        "EF_C": "- [x, {y}] & *z | \"q\" \\ 's'",
        "EF_D": "yes",
        "EF_E": "",
        "EF_F": "0x1f",
        "EF_G": "=lead",
    }
    document = yaml.safe_load(render(profile, variables))
    assert document["data"] == variables
    assert all(isinstance(value, str) for value in document["data"].values())


def test_quoting_backslashes_and_continuations(tmp_path: Path) -> None:
    profile = write(
        tmp_path / "p.opf",
        'onload_set \\\n  EF_NAME "two words"\nonload_set EF_X a\\ b\n'
        "onload_set EF_Y 'multi\nline'\nonload_set EF_Z 1\n",
    )
    assert read(profile) == {"EF_NAME": "two words", "EF_X": "a b", "EF_Y": "multi\nline", "EF_Z": "1"}


def test_a_later_set_wins(tmp_path: Path) -> None:
    profile = write(tmp_path / "p.opf", "onload_set EF_X 1\nonload_set EF_Y 2\nonload_set EF_X 3\n")
    assert read(profile) == {"EF_X": "3", "EF_Y": "2"}


def test_import_resolves_in_the_importing_directory_before_the_search_path(tmp_path: Path) -> None:
    write(tmp_path / "search" / "base.opf", "onload_set EF_FROM search\n")
    write(tmp_path / "search" / "extra.opf-fragment", "onload_set EF_EXTRA 1\n")
    write(tmp_path / "profiles" / "base.opf", "onload_set EF_FROM local\nonload_set EF_OVERRIDDEN base\n")
    profile = write(
        tmp_path / "profiles" / "top.opf",
        "onload_import base\nonload_import extra\nonload_set EF_OVERRIDDEN top\n",
    )
    assert read(profile, tmp_path / "search") == {"EF_FROM": "local", "EF_OVERRIDDEN": "top", "EF_EXTRA": "1"}
    (tmp_path / "profiles" / "base.opf").unlink()
    assert read(profile, tmp_path / "search")["EF_FROM"] == "search"


def test_nested_imports_resolve_relative_to_each_importing_profile(tmp_path: Path) -> None:
    write(tmp_path / "a" / "top.opf", "onload_import ../b/middle\n")
    write(tmp_path / "b" / "middle.opf", "onload_import leaf.opf-fragment\n")
    write(tmp_path / "b" / "leaf.opf-fragment", "onload_set EF_LEAF 1\n")
    assert read(tmp_path / "a" / "top.opf") == {"EF_LEAF": "1"}


def test_a_diamond_import_is_not_a_cycle(tmp_path: Path) -> None:
    write(tmp_path / "common.opf", "onload_set EF_C 1\n")
    write(tmp_path / "x.opf", "onload_import common\n")
    write(tmp_path / "y.opf", "onload_import common\n")
    assert read(write(tmp_path / "top.opf", "onload_import x\nonload_import y\n")) == {"EF_C": "1"}


def test_an_import_cycle_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "a.opf", "onload_set EF_A 1\nonload_import b\n")
    write(tmp_path / "b.opf", "onload_import c\n")
    write(tmp_path / "c.opf", "\nonload_import a\n")
    with pytest.raises(ProfileError, match=r"c\.opf:2: import cycle: a\.opf -> b\.opf -> c\.opf -> a\.opf"):
        read(tmp_path / "a.opf")
    write(tmp_path / "self.opf", "onload_import self\n")
    with pytest.raises(ProfileError, match="import cycle"):
        read(tmp_path / "self.opf")


def test_a_missing_import_names_where_it_looked(tmp_path: Path) -> None:
    profile = write(tmp_path / "p.opf", "onload_set EF_X 1\nonload_import nowhere\n")
    with pytest.raises(ProfileError, match=r"p\.opf:2: imported profile 'nowhere' not found .*nowhere\.opf"):
        read(profile, tmp_path / "other")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("onload_set EF_X $HOME", "variable or command substitution"),
        ('onload_set EF_X "${HOME}"', "variable or command substitution"),
        ("onload_set EF_X $(id)", "variable or command substitution"),
        ("onload_set EF_X `id`", "command substitution"),
        ('onload_set EF_X "`id`"', "command substitution"),
        ("onload_set EF_X 1; rm -rf /tmp/x", "command separator"),
        ("onload_set EF_X 1 && true", "'&'"),
        ("onload_set EF_X 1 | cat", "pipe"),
        ("onload_set EF_X 1 > /tmp/out", "redirection"),
        ("if true", "'if' is not supported"),
        ("if [ -n x ]; then", "unquoted '\\['"),
        ("fi", "'fi' is not supported"),
        ("for x in a b", "'for' is not supported"),
        ("myfunc() {", "subshell or function"),
        ("function f {", "'function' is not supported"),
        ("FOO=bar", "shell variable assignment"),
        ("export EF_X=1", "'export' is not supported"),
        ("source other.opf", "'source' is not supported"),
        ("onload_set EF_X *", "would be expanded"),
        ("onload_set EF_X ~/x", "would be expanded"),
        ("onload_set EF_X", "onload_set takes VAR VALUE or VAR=VALUE"),
        ("onload_set EF_X 1 2", "onload_set takes VAR VALUE or VAR=VALUE"),
        ("onload_set 1EF 2", "not an environment variable name"),
        ("onload_import a b", "onload_import takes one profile name"),
        ("onload_set EF_X 'open", "unterminated single quote"),
        ('onload_set EF_X "open', "unterminated double quote"),
    ],
)
def test_other_constructs_are_errors_naming_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    profile = write(tmp_path / "bad.opf", f"# header\nonload_set EF_OK 1\n{line}\n")
    with pytest.raises(ProfileError) as caught:
        read(profile)
    assert str(caught.value).startswith(f"{profile}:3: ")
    assert message.replace("\\", "") in str(caught.value)


def test_nothing_is_executed(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    profile = write(tmp_path / "p.opf", f"onload_set EF_X 1\ntouch {marker}\n")
    with pytest.raises(ProfileError, match="'touch' is not supported"):
        read(profile)
    assert not marker.exists()


def test_configmap_name_label_and_namespace(tmp_path: Path) -> None:
    profile = write(tmp_path / "latency-best.opf", "onload_set EF_POLL_USEC 100000\n")
    document = yaml.safe_load(render(profile, read(profile), namespace="apps"))
    assert document == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "onload-latency-best-profile",
            "namespace": "apps",
            "labels": {"app.kubernetes.io/part-of": "onload"},
        },
        "data": {"EF_POLL_USEC": "100000"},
    }


def test_a_profile_name_that_makes_no_configmap_name_is_refused(tmp_path: Path) -> None:
    profile = write(tmp_path / "Low_Latency.opf", "onload_set EF_X 1\n")
    with pytest.raises(ProfileError, match="not a valid ConfigMap name"):
        render(profile, read(profile))


def test_command_prints_one_document_per_profile_found_by_path_or_search_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "lib" / "throughput.opf", "onload_set EF_T 1\n")
    latency = write(tmp_path / "latency.opf", "onload_set EF_L 1\n")
    main([str(latency), "-I", str(tmp_path / "lib"), "--profile", "throughput"])
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["metadata"]["name"] for d in documents] == ["onload-latency-profile", "onload-throughput-profile"]
    assert [d["data"] for d in documents] == [{"EF_L": "1"}, {"EF_T": "1"}]


def test_command_reports_errors_without_a_traceback(tmp_path: Path) -> None:
    profile = write(tmp_path / "bad.opf", "onload_set EF_X $(reboot)\n")
    result = subprocess.run(
        [sys.executable, "-m", "onload_operator.profiles", str(profile)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert (
        result.stderr == f"onload-profile-to-configmap: {profile}:1: variable or command substitution '$' "
        "is not supported: a profile is parsed, not run\n"
    )
    missing = subprocess.run(
        [sys.executable, "-m", "onload_operator.profiles", "nosuch"], capture_output=True, text=True, check=False
    )
    assert missing.returncode == 1
    assert "nosuch: profile not found" in missing.stderr


def test_shipped_samples_are_the_command_output_of_their_profiles(tmp_path: Path) -> None:
    sources = sorted((SAMPLES / "opf").glob("*.opf"))
    assert {p.stem for p in sources} >= {"latency", "latency-best", "throughput"}
    main(["--output-dir", str(tmp_path), *map(str, sources)])
    generated = sorted(p.name for p in tmp_path.iterdir())
    shipped = sorted(p.name for p in SAMPLES.glob("*-profile.yaml"))
    assert generated == shipped
    for name in generated:
        assert (SAMPLES / name).read_text() == (tmp_path / name).read_text(), f"{name} is stale: make manifests"
    kustomization = yaml.safe_load((SAMPLES / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == shipped
