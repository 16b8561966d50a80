"""The README and the manuals under docs/: every manual is reachable from the front page, every
link resolves, and the shell commands they show are ones that work when pasted: valid bash, make
targets that exist, repository paths that exist, kubectl commands that name their namespace, and
helm --set values the shell does not split."""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
MANUALS = sorted((REPO_ROOT / "docs").glob("*.md"))
PAGES = [README, *MANUALS]
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
FRONT_PAGE_MAX_LINES = 200

# kubectl resources that live in a namespace: a command on one of them names it (-n, or -A).
NAMESPACED = {
    "modelservice", "modelservices", "msvc", "pod", "pods", "po", "deployment", "deployments",
    "deploy", "service", "services", "svc", "configmap", "configmaps", "cm", "secret", "secrets",
    "event", "events", "ev", "hpa", "servicemonitor", "servicemonitors", "networkpolicy",
    "networkpolicies", "role", "rolebinding", "application", "applications", "app",
    "appproject", "appprojects", "lease", "leases",
}  # fmt: skip
KUBECTL_VERBS = {
    "get", "describe", "delete", "edit", "patch", "logs", "port-forward", "exec", "wait",
    "rollout", "set", "label", "annotate", "scale", "top",
}  # fmt: skip
# Verbs whose first argument is a pod or a type/name even without a resource word.
POD_VERBS = {"logs", "port-forward", "exec"}
REPO_DIRS = (
    "hack/", "tests/", "docs/", "charts/", "examples/", "operator/", "runtime/", "bench/",
    "argocd/", "crds/", ".ci/",
)  # fmt: skip


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    text: str

    def where(self) -> str:
        return f"{self.page.relative_to(REPO_ROOT)}:{self.line}"


def fenced_blocks(page: Path) -> list[Block]:
    blocks, language, start, body = [], None, 0, []
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.startswith("```"):
            if language is None:
                language, start, body = line[3:].strip() or "text", number, []
            else:
                blocks.append(Block(page, start, language, "\n".join(body)))
                language = None
        elif language is not None:
            body.append(line)
    assert language is None, f"{page}: a code fence opened at line {start} never closes"
    return blocks


SHELL_BLOCKS = [b for page in PAGES for b in fenced_blocks(page) if b.language in SHELL_LANGUAGES]


def script(block: Block) -> str:
    """The commands of a block: a console block's `$ ` lines, a bash block as it is."""
    if block.language != "console":
        return block.text
    return "\n".join(line[2:] for line in block.text.splitlines() if line.startswith("$ "))


def commands(block: Block) -> list[str]:
    """One string per command: continuation lines joined, comments dropped, `;`/`&&`/`|` split,
    command substitutions as commands of their own."""
    joined = re.sub(r"\\\n\s*", " ", script(block))
    return [command for line in joined.splitlines() for command in split_commands(line)]


def split_commands(line: str) -> list[str]:
    out = []
    for inner in re.findall(r"\$\(([^()]*)\)", line):
        out += split_commands(inner)
    line = re.sub(r"\$\([^()]*\)", "SUBSTITUTED", line)
    try:
        words = shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote: bash -n reports it
        return out
    current: list[str] = []
    for word in [*words, ";"]:
        if word in {";", "&&", "||", "|", "&"}:
            if current:
                out.append(shlex.join(current))
            current = []
        else:
            current.append(word)
    return out


def ids(blocks: list[Block]) -> list[str]:
    return [b.where() for b in blocks]


def test_the_front_page_is_short_and_links_every_manual() -> None:
    text = README.read_text()
    assert len(text.splitlines()) < FRONT_PAGE_MAX_LINES
    linked = set(re.findall(r"\]\((docs/[^)#]+\.md)", text))
    missing = [
        str(m.relative_to(REPO_ROOT))
        for m in MANUALS
        if str(m.relative_to(REPO_ROOT)) not in linked
    ]
    assert not missing, f"manuals not linked from README.md: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO_ROOT)) for p in PAGES])
def test_every_relative_link_resolves(page: Path) -> None:
    text = "\n".join(
        b for i, b in enumerate(re.split(r"^```.*$", page.read_text(), flags=re.M)) if i % 2 == 0
    )
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        unknown_anchor = anchor and resolved.suffix == ".md" and anchor not in anchors(resolved)
        if not resolved.exists() or unknown_anchor:
            broken.append(target)
    assert not broken, f"{page.relative_to(REPO_ROOT)}: broken links {broken}"


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as '-'."""
    out = set()
    for heading in re.findall(r"^#+ (.+)$", page.read_text(), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=ids(SHELL_BLOCKS))
def test_shell_blocks_are_valid_bash(block: Block) -> None:
    done = subprocess.run(["bash", "-n"], input=script(block), capture_output=True, text=True)
    assert done.returncode == 0, f"{block.where()}: {done.stderr}"


def test_make_targets_named_in_the_docs_exist() -> None:
    help_text = subprocess.run(
        ["make", "-s", "help"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    targets = {line.split()[0] for line in help_text.splitlines() if line.strip()}
    unknown = []
    for block in SHELL_BLOCKS:
        for command in commands(block):
            words = shlex.split(command)
            if words[:1] == ["make"]:
                named = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
                unknown += [f"{block.where()}: make {t}" for t in named if t not in targets]
    assert not unknown, unknown


def test_repository_paths_in_commands_exist() -> None:
    missing = []
    for block in SHELL_BLOCKS:
        for command in commands(block):
            for word in shlex.split(command):
                path = word.split("=", 1)[-1].rstrip(",.;:")
                if not path.startswith(REPO_DIRS) or re.search(r"[<>*{}$]|\.\.\.", path):
                    continue
                if not (REPO_ROOT / path).exists():
                    missing.append(f"{block.where()}: {path}")
    assert not missing, missing


def kubectl_misses_namespace(words: list[str]) -> bool:
    """Whether a kubectl command addresses a namespaced resource without naming a namespace."""
    if "-n" in words or "-A" in words or "--all-namespaces" in words:
        return False
    if any(w.startswith(("--namespace", "-n=")) for w in words):
        return False
    args = [w for w in words[1:] if not w.startswith("-")]
    if not args or args[0] not in KUBECTL_VERBS:
        return False
    verb, rest = args[0], args[1:]
    if verb == "rollout" or verb == "set":
        rest = rest[1:]
    if "-f" in words or "--filename" in words or not rest:
        return False
    kind = rest[0].split("/")[0].split(".")[0].lower()
    return kind in NAMESPACED or verb in POD_VERBS


def test_kubectl_commands_name_their_namespace() -> None:
    unnamed = []
    for block in SHELL_BLOCKS:
        for command in commands(block):
            words = shlex.split(command)
            if words[:1] == ["kubectl"] and kubectl_misses_namespace(words):
                unnamed.append(f"{block.where()}: {command}")
    assert not unnamed, f"kubectl without -n on namespaced resources: {unnamed}"


def test_the_namespace_check_can_fail() -> None:
    assert kubectl_misses_namespace(shlex.split("kubectl get modelservices"))
    assert kubectl_misses_namespace(shlex.split("kubectl logs deploy/breast-cancer"))
    assert not kubectl_misses_namespace(shlex.split("kubectl -n x get msvc"))
    assert not kubectl_misses_namespace(
        shlex.split("kubectl get crd modelservices.aiops-quality.io")
    )


def helm_set_values_split_by_the_shell(words: list[str]) -> list[str]:
    """--set values that reach helm with a bare comma splitting off a part without '=': what an
    unquoted `--set a=x\\,y` becomes once bash has removed the backslash."""
    bad = []
    for flag, value in itertools.pairwise(words):
        if flag in {"--set", "--set-string"}:
            parts = re.split(r"(?<!\\),", value)
            bad += [value for part in parts if "=" not in part]
    return bad


def test_helm_set_values_survive_the_shell() -> None:
    assert helm_set_values_split_by_the_shell(shlex.split(r"helm x --set a=team-a\,team-b"))
    assert not helm_set_values_split_by_the_shell(shlex.split(r"helm x --set 'a=team-a\,team-b'"))
    bad = []
    for block in SHELL_BLOCKS:
        for command in commands(block):
            words = shlex.split(command)
            if any(Path(w).name == "helm" or w == '"$helm"' for w in words[:1]):
                bad += [f"{block.where()}: {v}" for v in helm_set_values_split_by_the_shell(words)]
    for page in PAGES:  # and the `--set ...` a sentence quotes
        for span in re.findall(r"`(--set [^`]+)`", page.read_text()):
            bad += [
                f"{page.name}: {v}" for v in helm_set_values_split_by_the_shell(shlex.split(span))
            ]
    assert not bad, bad
