"""Static reference data of the generated retail chain: cities, categories, payment mix,
search terms, name pools. Plain constants so every worker process sees the same values."""

from __future__ import annotations

from functools import cache

# (city, province, 6-digit administrative area code used for ID card numbers, store weight)
CITIES: tuple[tuple[str, str, str, float], ...] = (
    ("上海", "上海市", "310104", 3.0),
    ("北京", "北京市", "110105", 3.0),
    ("广州", "广东省", "440106", 2.0),
    ("深圳", "广东省", "440305", 2.0),
    ("杭州", "浙江省", "330106", 2.0),
    ("南京", "江苏省", "320106", 1.5),
    ("苏州", "江苏省", "320505", 1.5),
    ("成都", "四川省", "510107", 1.5),
    ("重庆", "重庆市", "500103", 1.2),
    ("武汉", "湖北省", "420106", 1.2),
    ("西安", "陕西省", "610113", 1.0),
    ("天津", "天津市", "120101", 1.0),
    ("长沙", "湖南省", "430104", 1.0),
    ("郑州", "河南省", "410105", 1.0),
    ("青岛", "山东省", "370202", 1.0),
    ("济南", "山东省", "370102", 0.8),
    ("厦门", "福建省", "350203", 0.8),
    ("福州", "福建省", "350102", 0.8),
    ("合肥", "安徽省", "340104", 0.8),
    ("宁波", "浙江省", "330203", 0.8),
    ("沈阳", "辽宁省", "210102", 0.8),
    ("大连", "辽宁省", "210202", 0.6),
    ("哈尔滨", "黑龙江省", "230102", 0.6),
    ("昆明", "云南省", "530102", 0.6),
    ("无锡", "江苏省", "320213", 0.6),
    ("东莞", "广东省", "441900", 0.6),
    ("佛山", "广东省", "440604", 0.6),
    ("石家庄", "河北省", "130102", 0.5),
    ("南昌", "江西省", "360102", 0.5),
    ("贵阳", "贵州省", "520102", 0.5),
)

# (category, SKU prefix digits after 69, number of SKUs, min price yuan, max price yuan,
#  popularity weight, typical max qty)
CATEGORIES: tuple[tuple[str, int, float, float, float, int], ...] = (
    ("生鲜", 220, 3.0, 120.0, 0.22, 5),
    ("美妆", 160, 39.0, 980.0, 0.11, 2),
    ("母婴", 140, 25.0, 560.0, 0.08, 3),
    ("家居", 180, 9.9, 899.0, 0.10, 3),
    ("服饰", 200, 49.0, 1299.0, 0.10, 2),
    ("数码", 90, 69.0, 7999.0, 0.05, 1),
    ("食品", 260, 2.5, 99.0, 0.24, 6),
    ("酒水", 120, 6.0, 2699.0, 0.10, 6),
)
CATEGORY_NAMES: tuple[str, ...] = tuple(c[0] for c in CATEGORIES)

PAYMENT_METHODS: tuple[str, ...] = ("wechat", "alipay", "card", "cash", "other")
PAYMENT_WEIGHTS: tuple[float, ...] = (0.42, 0.30, 0.14, 0.11, 0.03)

REGISTER_CHANNELS: tuple[str, ...] = ("store", "wechat", "app", "web")
REGISTER_WEIGHTS: tuple[float, ...] = (0.58, 0.22, 0.12, 0.08)

WEB_CHANNELS: tuple[str, ...] = ("app", "miniprogram", "web")
WEB_CHANNEL_WEIGHTS: tuple[float, ...] = (0.45, 0.35, 0.20)

EMAIL_DOMAINS: tuple[str, ...] = (
    "qq.com",
    "163.com",
    "126.com",
    "sina.com",
    "foxmail.com",
    "outlook.com",
    "gmail.com",
    "139.com",
)

MOBILE_PREFIXES: tuple[int, ...] = (
    130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 150, 151, 152, 153, 155, 156, 157, 158,
    159, 166, 173, 175, 176, 177, 178, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 191,
    198, 199,
)  # fmt: skip

# The number cashiers key in when a customer will not give theirs: shared by many strangers.
PLACEHOLDER_PHONE = 13800000000

SEARCH_TERMS: dict[str, tuple[str, ...]] = {
    "生鲜": ("车厘子", "三文鱼", "有机蔬菜", "草莓", "牛排", "鸡蛋"),
    "美妆": ("面膜", "口红", "精华液", "防晒霜", "洗面奶"),
    "母婴": ("奶粉", "纸尿裤", "婴儿湿巾", "辅食", "儿童玩具"),
    "家居": ("收纳盒", "四件套", "保温杯", "拖把", "香薰"),
    "服饰": ("羽绒服", "运动鞋", "连衣裙", "卫衣", "牛仔裤"),
    "数码": ("蓝牙耳机", "充电宝", "手机壳", "平板", "智能手表"),
    "食品": ("坚果", "零食大礼包", "牛奶", "咖啡", "方便面"),
    "酒水": ("茅台", "红酒", "啤酒", "白酒礼盒", "气泡水"),
}
PAGES: tuple[str, ...] = ("/", "/home", "/promo/flash-sale", "/member/center", "/cart", "/coupons")
REFERRERS: tuple[str, ...] = (
    "https://www.baidu.com/",
    "https://weixin.qq.com/",
    "https://www.douyin.com/",
    "https://www.xiaohongshu.com/",
    "",
)
UTM_SOURCES: tuple[str, ...] = ("wechat", "douyin", "baidu", "xiaohongshu", "sms")

ID_CARD_WEIGHTS: tuple[int, ...] = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CARD_CHECK = "10X98765432"


def id_card_check_char(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of a PRC resident ID (GB 11643-1999)."""
    total = sum(int(c) * w for c, w in zip(first17, ID_CARD_WEIGHTS, strict=True))
    return ID_CARD_CHECK[total % 11]


def id_card_is_valid(value: str) -> bool:
    return (
        len(value) == 18
        and value[:17].isdigit()
        and value[17] in ID_CARD_CHECK
        and id_card_check_char(value[:17]) == value[17]
    )


@cache
def name_pools() -> tuple[tuple[str, ...], tuple[float, ...], tuple[str, ...], tuple[str, ...]]:
    """(surnames, surname weights, male given names, female given names) from Faker's zh_CN
    provider; drawn with our own seeded RNG because calling Faker per row is ~50x slower."""
    from faker.providers.person.zh_CN import Provider

    surnames = tuple(Provider.last_names.keys())
    weights = tuple(float(w) for w in Provider.last_names.values())
    total = sum(weights)
    return (
        surnames,
        tuple(w / total for w in weights),
        tuple(Provider.first_names_male),
        tuple(Provider.first_names_female),
    )


@cache
def romanized_pools() -> tuple[tuple[str, ...], tuple[str, ...]]:
    from faker.providers.person.zh_CN import Provider

    return (
        tuple(n.lower() for n in Provider.last_romanized_names),
        tuple(n.lower() for n in Provider.first_romanized_names),
    )
