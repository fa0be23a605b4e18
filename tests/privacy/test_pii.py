import hashlib
import hmac

from pyspark.sql import functions as F

from jobs.privacy.pii import hmac_col, load_key, mask_email, mask_id_card, mask_phone


def test_sql_hmac_equals_python_hmac(spark):
    key = bytes(range(40))
    values = ["13800138000", "zhang.san@qq.com", "张三", ""]
    df = spark.createDataFrame([(v,) for v in values] + [(None,)], "v string")
    got = {r.v: r.h for r in df.select("v", hmac_col(F.col("v"), key).alias("h")).collect()}
    for v in values:
        assert got[v] == hmac.new(key, v.encode(), hashlib.sha256).hexdigest()
    assert got[None] is None


def test_long_key_is_hashed_first(spark):
    key = b"k" * 100
    df = spark.createDataFrame([("x",)], "v string")
    (h,) = df.select(hmac_col(F.col("v"), key)).first()
    assert h == hmac.new(key, b"x", hashlib.sha256).hexdigest()


def test_masks(spark):
    df = spark.createDataFrame(
        [("13800138000", "Zhang@QQ.com", "110101199003071234")], "p string, e string, i string"
    )
    r = df.select(mask_phone(F.col("p")), mask_email(F.col("e")), mask_id_card(F.col("i"))).first()
    assert tuple(r) == ("138****8000", "Z***@QQ.com", "1101**********1234")


def test_key_file_created_once_and_refused_in_production(tmp_path, monkeypatch):
    import pytest

    from jobs.config import PrivacyConf
    from jobs.privacy.pii import PiiKeyError

    monkeypatch.delenv("CDP_PII_KEY", raising=False)
    f = tmp_path / "k" / "pii.key"
    k1 = load_key(PrivacyConf(key_file=f, create_key_if_missing=True), tmp_path / "lake1").key
    again = load_key(PrivacyConf(key_file=f, create_key_if_missing=False), tmp_path / "lake1")
    assert len(k1) == 32 and again.key == k1
    with pytest.raises(PiiKeyError, match="CDP_PII_KEY"):
        load_key(
            PrivacyConf(key_file=tmp_path / "none.key", create_key_if_missing=False),
            tmp_path / "lake2",
        )
    monkeypatch.setenv("CDP_PII_KEY", "00ff")
    got = load_key(
        PrivacyConf(key_file=tmp_path / "none.key", create_key_if_missing=False), tmp_path / "lake2"
    )
    assert got.key == b"\x00\xff" and got.source == "CDP_PII_KEY"
