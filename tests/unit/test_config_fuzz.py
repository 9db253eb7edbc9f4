"""Property test: a mangled topology file loads or is explained; it never crashes.

Starting from the full example, hypothesis applies the edits a tired person makes
(deleted, duplicated, swapped or re-indented lines, a value replaced by junk, a stray
key, a truncated paste). Whatever comes out must either load or raise ``ConfigError``
whose every problem has a file and a line (no line only for whole-file problems).
Any other exception is a traceback that would reach a user: a bug (promise 5).
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failback.config import ConfigError, Topology, load_topology_text

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    (ROOT / "examples" / "failback.yaml").read_text(),
    (ROOT / "examples" / "command-only.yaml").read_text(),
    (ROOT / "tests" / "data" / "topologies" / "good" / "anchors.yaml").read_text(),
]
FILE = "fuzz/failback.yaml"
KEY_VALUE = re.compile(r"^(\s*-?\s*[\w.-]+:)\s*(.*)$")

junk_scalars = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=-(10**12), max_value=10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(
        [
            "~",
            "null",
            "no",
            "yes",
            "[]",
            "{}",
            "[1, 2]",
            "{a: 1}",
            "-5s",
            "0",
            "16 megs",
            "env:",
            "'",
            '"',
            "&a",
            "*a",
            "*undefined",
            "!!python/object:os.system",
            "!!binary x",
            "2024-13-45",
            "1:30",
            "0o777",
            "dc3",
            "\t",
            ": :",
            "[",
            "{",
            "- x",
            "|",
            ">-",
            "%",
            "@",
            "`",
        ]
    ),
)
keys = st.one_of(
    st.sampled_from(
        ["driver", "sites", "port", "primary_site", "options", "x-a", "dc1", "<<", "?", "name"]
    ),
    st.from_regex(r"[a-z_]{1,10}", fullmatch=True),
)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SOURCES))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        lines = text.split("\n")
        n = len(lines)
        i = draw(st.integers(min_value=0, max_value=max(0, n - 1)))
        op = draw(
            st.sampled_from(
                [
                    *("delete", "duplicate", "indent", "dedent", "scalar", "key", "swap"),
                    *("truncate", "insert_chars", "tabify"),
                ]
            )
        )
        if op == "delete" and lines:
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "indent":
            lines[i] = " " * draw(st.integers(1, 6)) + lines[i]
        elif op == "dedent":
            lines[i] = lines[i][draw(st.integers(1, 6)) :]
        elif op == "scalar":
            candidates = [k for k, line in enumerate(lines) if KEY_VALUE.match(line)]
            if candidates:
                k = draw(st.sampled_from(candidates))
                match = KEY_VALUE.match(lines[k])
                assert match is not None
                lines[k] = f"{match.group(1)} {draw(junk_scalars)}"
        elif op == "key":
            indent = " " * draw(st.sampled_from([0, 2, 4, 6, 8, 10, 12]))
            lines.insert(i, f"{indent}{draw(keys)}: {draw(junk_scalars)}")
        elif op == "swap":
            j = draw(st.integers(min_value=0, max_value=max(0, n - 1)))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "truncate":
            joined = "\n".join(lines)
            return joined[: draw(st.integers(0, len(joined)))]
        elif op == "insert_chars":
            line = lines[i]
            at = draw(st.integers(0, len(line)))
            lines[i] = line[:at] + draw(st.text(max_size=4)) + line[at:]
        elif op == "tabify":
            lines[i] = lines[i].replace("  ", "\t", 1)
        text = "\n".join(lines)
    return text


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated())
def test_mangled_file_loads_or_is_explained(text: str) -> None:
    try:
        topology = load_topology_text(text, FILE)
    except ConfigError as err:
        assert err.problems, "a ConfigError without problems"
        assert err.exit_code == 2
        line_count = max(1, len(text.splitlines()))
        for problem in err.problems:
            assert problem.file == FILE
            assert problem.message
            if problem.line is None:
                assert problem.key == "", f"keyed problem without a line: {problem}"
            else:
                assert 1 <= problem.line <= line_count + 1, problem
            assert problem.render().startswith(FILE)
        return
    assert isinstance(topology, Topology)
    for service in topology.services.values():
        assert service.secondary_site != service.primary_site
