"""Every bad definition gives a clear message naming where it is, exit code 2, no traceback."""

from __future__ import annotations

import pytest
from conftest import ProjectDir

OK_RAW = """
    import pyarrow as pa

    from orchestrator import asset


    @asset(layer="bronze")
    def raw(ctx):
        return pa.table({"id": [1, 2]})
"""

CASES: dict[str, tuple[dict[str, str], list[str]]] = {
    "cycle": (
        {
            "assets/silver/a.sql": "SELECT * FROM silver.b\n",
            "assets/silver/b.sql": "SELECT * FROM silver.a\n",
        },
        ["dependency cycle: silver.a -> silver.b -> silver.a"],
    ),
    "unknown upstream": (
        {
            "assets/bronze/raw.py": OK_RAW,
            "assets/silver/clean.sql": "-- about\n\nSELECT * FROM bronze.rwa\n",
        },
        ["clean.sql:3", "bronze.rwa", "did you mean 'bronze.raw'?"],
    ),
    "unknown parameter upstream": (
        {
            "assets/bronze/raw.py": OK_RAW,
            "assets/silver/clean.py": """
                from orchestrator import asset


                @asset(layer="silver")
                def clean(ctx, raws):
                    return raw_data
            """,
        },
        ["clean.py:4", "'raws'", "did you mean 'bronze.raw'?"],
    ),
    "duplicate": (
        {
            "assets/bronze/raw.py": OK_RAW,
            "assets/bronze/raw.sql": "SELECT 1 AS id\n",
        },
        ["bronze.raw", "raw.py:6", "raw.sql:1"],
    ),
    "invalid name": (
        {
            "assets/bronze/raw.py": """
                from orchestrator import asset


                @asset(layer="bronze", name="raw-orders")
                def raw(ctx):
                    return None
            """,
        },
        ["raw.py:4", "invalid asset name 'raw-orders'"],
    ),
    "sql parse error": (
        {
            "assets/bronze/raw.py": OK_RAW,
            "assets/silver/clean.sql": (
                "-- checks: not_null(id)\nSELECT id,\n  FROM FROM bronze.raw\n"
            ),
        },
        ["clean.sql:3", "cannot parse SQL"],
    ),
    "python syntax error": (
        {"assets/bronze/raw.py": "from orchestrator import asset\n\ndef broken(:\n"},
        ["raw.py:3", "syntax error"],
    ),
    "unsupported return type": (
        {
            "assets/bronze/raw.py": """
                from orchestrator import asset


                @asset(layer="bronze")
                def raw(ctx):
                    return [1, 2, 3]
            """,
        },
        ["bronze.raw", "returned builtins.list", "pyarrow.Table"],
    ),
    "incompatible schema change": (
        {
            "assets/bronze/raw.py": """
                import pyarrow as pa

                from orchestrator import asset


                @asset(layer="bronze", code_version="2")
                def raw(ctx):
                    return pa.table({"id": ["one", "two"]})
            """,
        },
        ["bronze.raw", "incompatible schema change", "id: long -> string"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_definition_exits_2_with_a_located_message(project: ProjectDir, case: str) -> None:
    files, expected = CASES[case]
    if case == "incompatible schema change":
        project.write({"assets/bronze/raw.py": OK_RAW})
        assert project.sluice("materialize").code == 0
    project.write(files)
    result = project.sluice("materialize")
    assert result.code == 2, result.out
    for text in expected:
        assert text in result.out, (text, result.out)
    assert "Traceback" not in result.out


def test_unknown_selection_suggests_a_name(project: ProjectDir) -> None:
    project.write({"assets/bronze/raw.py": OK_RAW})
    result = project.sluice("plan", "rwa")
    assert result.code == 2
    assert "did you mean" in result.out and "raw" in result.out


def test_user_code_error_names_the_asset_and_line_and_exits_1(project: ProjectDir) -> None:
    project.write(
        {
            "assets/bronze/raw.py": """
                from orchestrator import asset


                @asset(layer="bronze")
                def raw(ctx):
                    return 1 / 0
            """
        }
    )
    result = project.sluice("materialize")
    assert result.code == 1
    assert "asset bronze.raw raised ZeroDivisionError" in result.out
    assert "raw.py:6" in result.out
    assert "Traceback" not in result.out
