"""The bronze row builders and writer of the identity tests serve here too."""

from jobs.schemas import table_schema
from tests.identity.conftest import write_bronze  # noqa: F401


def write_xref(spark, ctx, entries: list[tuple[str, str, str | None]]) -> None:
    """Overwrite silver/member_xref with (source, source_key, member_id) rows."""
    schema = table_schema("silver/member_xref")
    data = [
        tuple({"source": s, "source_key": k, "member_id": m}.get(c) for c in schema.columns)
        for s, k, m in entries
    ]
    ctx.lake.overwrite(spark.createDataFrame(data, schema.struct), "silver/member_xref")
