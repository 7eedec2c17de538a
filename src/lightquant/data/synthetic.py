"""A deterministic synthetic market: the default dataset, with planted, known signals.

Real data (CSMD) cannot tell whether a model that scores 52% learned nothing or
learned all there is; here the answer is known by construction. The generator
mimics the CSMD layout (business-day calendar, OHLCV bars with raw prices ~1000x
apart, short Chinese news sentences per stock-day) and plants two signals whose
strength is a parameter.

Model of the market
-------------------
Each stock ``i`` has a standardized return ``z`` on each of its own trading days:

    z_{t+1} = sqrt(price_signal) * P_t + sqrt(news_signal) * N_t
              + sqrt(1 - price_signal - news_signal) * eps_{t+1}

* ``P_t = -z_t``: one-day reversal, observable from closes up to ``t``.
* ``N_t = s_t / std(s)``: daily news sentiment ``s_t`` in {-1, 0, +1} with
  probabilities 0.3 / 0.4 / 0.3, observable only through the news texts of day ``t``.
* ``eps``: unit-variance noise = a market factor common to all stocks (loading
  ``beta_i ~ U(0.5, 1.5)``, explaining roughly a third of the noise variance, as in
  A-shares) plus idiosyncratic noise, both Student-t(4) rescaled to unit variance
  (fat tails).

All three terms have unit variance and are uncorrelated, so ``z`` stays at unit
variance and ``price_signal`` / ``news_signal`` are the shares of next-day
variance each signal explains. Both 0 means pure noise: nothing is predictable.

The close-to-close log return is ``r_t = sigma_t * z_t`` with a GARCH(1,1)
volatility ``sigma_t`` (volatility clustering) whose long-run level is drawn per
stock, log-uniform in 1%..3% a day. ``close_t = close_{t-1} * exp(r_t)``, so
``sign(close_{t+1} / close_t - 1) == sign(z_{t+1})`` exactly: the project's label
sees the planted signal undistorted. There is no drift: the direction label is
balanced (up and down each ~50%).

"Yesterday" is always the stock's previous *trading* day: after a suspension the
recursion (and the return) continues from the last traded close, like the
project's feature code.

How much can a model get? (sizing test expectations)
----------------------------------------------------
For a Gaussian signal that explains a share ``rho`` of the variance, the
Bayes-optimal direction accuracy is ``0.5 + arcsin(sqrt(rho)) / pi``:

    rho   0.05   0.1    0.2    0.3    0.35   0.5    0.8
    acc   0.572  0.602  0.648  0.684  0.701  0.750  0.852

* price only (news_signal = 0): ``rho = price_signal`` (default 0.05 -> ~0.57).
* news only: the sentiment is discrete, so days with neutral news are coin flips
  and days with polar news are predictable with ``Phi(sqrt(n / (0.6 (1 - n))))``
  (Gaussian noise): overall ``0.2 + 0.6 * Phi(...)``, close to the formula
  (news_signal 0.3 -> ~0.68, 0.5 -> ~0.74).
* both (defaults 0.05 + 0.3): roughly ``rho = price_signal + news_signal`` -> ~0.70.

The Student-t noise moves these by a point or two, upward: most of its mass is
nearer zero than a Gaussian's. Measured (all stocks pooled, several seeds):
price_signal 0.5 -> 0.76-0.77 with sign(-r_t); news_signal 0.5 -> 0.92 on
polar-news days, ~0.75 counting neutral days as coin flips; both 0 -> 0.50+-0.01.

What is realistic, what is not
------------------------------
Realistic: fat tails, volatility clustering, a market factor, heterogeneous
volatility and price levels, volume that rises with big moves, late listings
(NaN before the first bar), suspensions (runs of 1-5 all-NaN days), several
news items a day, most of them not about the day's sentiment.
Not modelled: tick-size rounding and the +-10% daily limit (both would distort
the planted signal for cheap or volatile stocks), dividends and splits
(``adj_close == close``), weekend news, delistings, sector structure, and any
link between news and *same-day* returns. Planted strengths far exceed anything
seen in real markets (where next-day accuracy above ~0.53 is rare); that is the
point: a model that works must find them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
import pandas as pd

from lightquant.data.panel import Panel

#: Bump whenever the generated panel changes for the same arguments (it is part of the cache key).
GENERATOR_VERSION = "synthetic-1"

LANGUAGES = ("zh", "en")

# Sentiment s in {-1, 0, +1}; N = s / SENTIMENT_STD has unit variance.
SENTIMENT_PROBS = (0.3, 0.4, 0.3)
SENTIMENT_STD = math.sqrt(SENTIMENT_PROBS[0] + SENTIMENT_PROBS[2])

_T_DF = 4.0
_T_SCALE = math.sqrt(_T_DF / (_T_DF - 2.0))  # std of a Student-t(4): divide by it for unit variance
_MARKET_WEIGHT = 0.7  # beta=1 -> market explains 0.7^2/(1+0.7^2) ~ 1/3 of the noise variance
_GARCH_ALPHA = (0.05, 0.10)
_GARCH_PERSISTENCE = 0.975  # alpha + beta: vol shocks half-decay in ~4 weeks, as in equity indices
# t(4) shocks have infinite kurtosis, so an uncapped GARCH occasionally explodes; real A-shares are
# bounded by the +-10% limit, which this cap roughly mirrors.
_SIGMA_CAP = 3.0
_MAX_SUSPENSION = 5
# On a polar-sentiment day the first text always carries the sentiment; the others carry it with
# this probability and are neutral otherwise, so a model must find the informative sentence.
_POLAR_TEXT_SHARE = 0.7

# Two-syllable brand + two-syllable industry gives the four-character names typical of A-shares.
_ZH_PREFIXES = (
    "华信", "中远", "东方", "新华", "金泰", "长城", "宏达", "天成", "国泰", "海通",
    "恒瑞", "嘉和", "瑞丰", "兴业", "安达", "盛世", "通达", "鑫源", "远航", "博瑞",
    "龙腾", "泰和", "信达", "永新", "华联", "中天", "东兴", "新宇", "金盛", "长江",
)  # fmt: skip
_ZH_INDUSTRIES = (
    "科技", "银行", "医药", "能源", "电子", "地产", "食品", "汽车", "化工", "证券",
    "电力", "传媒", "材料", "物流", "建设", "重工", "环保", "通信", "保险", "农业",
)  # fmt: skip
_EN_PREFIXES = (
    "Alpha", "Beta", "Gamma", "Delta", "Summit", "Golden", "Silver", "Pacific", "Atlas", "Nova",
    "Orion", "Zenith", "Harbor", "Eastern", "Northern", "Crown", "Pioneer", "Vertex", "Horizon", "Union",
    "Liberty", "Sterling", "Apex", "Titan", "Meridian", "Evergreen", "Keystone", "Redwood", "Beacon",
    "Cascade",
)  # fmt: skip
_EN_INDUSTRIES = (
    "Tech", "Bank", "Pharma", "Energy", "Electronics", "Realty", "Foods", "Motors", "Chemicals",
    "Securities", "Power", "Media", "Materials", "Logistics", "Construction", "Heavy Industries",
    "Environmental", "Telecom", "Insurance", "Agriculture",
)  # fmt: skip

#: News templates by language and polarity (+1 positive, -1 negative, 0 neutral).
#: Slots: {name}; {pct} 5-120 (one decimal); {small} 0.5-5 (two decimals); {amt} 0.5-50 (two decimals); {k} 1-9.
TEMPLATES: dict[str, dict[int, tuple[str, ...]]] = {
    "zh": {
        1: (
            "{name}发布业绩预告，预计净利润同比大幅增长{pct}%",
            "{name}获机构上调评级至买入，目标价上调{pct}%",
            "{name}中标重大项目，合同金额约{amt}亿元",
            "{name}宣布回购计划，拟回购金额不超过{amt}亿元",
            "{name}控股股东增持公司股份，彰显发展信心",
            "{name}新产品获市场热捧，订单量环比增长{pct}%",
            "{name}获北向资金大幅加仓，近5日净买入{amt}亿元",
            "{name}季度营收超预期，同比增长{pct}%",
            "{name}获得政策扶持，行业景气度持续提升",
            "{name}与行业龙头签署战略合作协议，业务拓展提速",
        ),
        -1: (
            "{name}遭监管问询，股价承压",
            "{name}发布业绩预警，预计净利润同比下降{pct}%",
            "{name}被机构下调评级，目标价下调{pct}%",
            "{name}大股东拟减持不超过{small}%股份",
            "{name}涉嫌信息披露违规，被证监会立案调查",
            "{name}主要产品价格持续下跌，毛利率承压",
            "{name}遭北向资金大幅减持，近5日净卖出{amt}亿元",
            "{name}重大合同终止，涉及金额约{amt}亿元",
            "{name}季度营收不及预期，同比下滑{pct}%",
            "{name}核心高管突然离职，经营存在不确定性",
        ),
        0: (
            "{name}召开年度股东大会，审议通过多项议案",
            "{name}最新融资余额为{amt}亿元",
            "{name}现{k}笔大宗交易，合计成交金额{amt}亿元",
            "{name}披露投资者关系活动记录表",
            "{name}董事会完成换届选举",
            "{name}发布关于召开临时股东大会的通知",
            "{name}接受{k}家机构调研，就经营情况进行交流",
            "{name}今日换手率为{small}%",
            "{name}修订公司章程部分条款",
        ),
    },
    "en": {
        1: (
            "{name} guides for net profit up {pct}% year on year",
            "{name} upgraded to buy, target price raised {pct}%",
            "{name} wins a major contract worth about {amt} billion",
            "{name} announces a share buyback of up to {amt} billion",
            "{name} controlling shareholder raises its stake, signalling confidence",
            "{name} new product sells strongly, orders up {pct}% on the quarter",
            "{name} sees heavy northbound buying, {amt} billion net inflow in 5 days",
            "{name} quarterly revenue beats expectations, up {pct}%",
            "{name} benefits from new policy support as its industry booms",
            "{name} signs a strategic partnership with an industry leader",
        ),
        -1: (
            "{name} receives a regulatory inquiry, shares under pressure",
            "{name} warns net profit will fall {pct}% year on year",
            "{name} downgraded, target price cut {pct}%",
            "{name} major shareholder plans to sell up to {small}% of shares",
            "{name} under investigation for disclosure violations",
            "{name} main product prices keep falling, margins squeezed",
            "{name} sees heavy northbound selling, {amt} billion net outflow in 5 days",
            "{name} major contract worth about {amt} billion terminated",
            "{name} quarterly revenue misses expectations, down {pct}%",
            "{name} key executive resigns abruptly, outlook uncertain",
        ),
        0: (
            "{name} holds its annual general meeting, all resolutions passed",
            "{name} margin balance stands at {amt} billion",
            "{name} records {k} block trades totalling {amt} billion",
            "{name} publishes its investor relations activity record",
            "{name} completes board re-election",
            "{name} gives notice of an extraordinary general meeting",
            "{name} hosts {k} institutions for a research visit",
            "{name} turnover rate today is {small}%",
            "{name} amends parts of its articles of association",
        ),
    },
}

_SLOT_PATTERNS = {"pct": r"\d+\.\d", "small": r"\d+\.\d\d", "amt": r"\d+\.\d\d", "k": r"\d"}


def _template_regex(template: str) -> str:
    parts = re.split(r"\{(\w+)\}", template)
    out = []
    for j, part in enumerate(parts):
        if j % 2 == 0:
            out.append(re.escape(part))
        else:
            out.append(".+?" if part == "name" else _SLOT_PATTERNS[part])
    return "".join(out)


_POLARITY_RE = {
    pol: re.compile(
        "|".join(f"(?:{_template_regex(t)})" for lang in LANGUAGES for t in TEMPLATES[lang][pol])
    )
    for pol in (1, -1, 0)
}


def template_polarity(texts: Sequence[str]) -> np.ndarray:
    """(N,) int8 polarity of generated news texts: +1 / -1 / 0 (neutral or not a template text).

    For tests and diagnostics: recovers the planted sentiment from the texts alone.
    """
    out = np.zeros(len(texts), dtype=np.int8)
    for j, text in enumerate(texts):
        if _POLARITY_RE[1].fullmatch(text):
            out[j] = 1
        elif _POLARITY_RE[-1].fullmatch(text):
            out[j] = -1
    return out


def _stock_names(n: int, language: str, rng: np.random.Generator) -> list[str]:
    prefixes, industries = (_ZH_PREFIXES, _ZH_INDUSTRIES) if language == "zh" else (_EN_PREFIXES, _EN_INDUSTRIES)
    sep = "" if language == "zh" else " "
    combos = [f"{p}{sep}{ind}" for p in prefixes for ind in industries]
    order = rng.permutation(len(combos))
    names = []
    for j in range(n):
        base = combos[order[j % len(combos)]]
        rnd = j // len(combos)
        names.append(base if rnd == 0 else f"{base}{sep}{rnd + 1}")
    return names


def _check_real(name: str, value: object, lo: float, hi: float, hi_open: bool) -> float:
    bracket = ")" if hi_open else "]"
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number in [{lo}, {hi}{bracket}, got {value!r}")
    v = float(value)
    if v < lo or v > hi or (hi_open and v == hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}{bracket}, got {v}")
    return v


def _check_int(name: str, value: object, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


def _check_date(name: str, value: object) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)  # type: ignore[arg-type]
    except (ValueError, TypeError) as e:
        raise ValueError(f"{name} must be a date like '2021-01-04', got {value!r}") from e
    if ts is pd.NaT:
        raise ValueError(f"{name} must be a date like '2021-01-04', got {value!r}")
    return ts.normalize()


class SyntheticSource:
    """Generates a :class:`Panel` from the market model in this module's docstring.

    Same arguments -> bit-identical panel. ``price_signal`` and ``news_signal`` are the
    shares of next-day return variance explained by one-day reversal and by news sentiment.
    """

    name = "synthetic"

    def __init__(
        self,
        n_stocks: int = 50,
        start: str = "2021-01-04",
        end: str = "2024-12-31",
        seed: int = 37,
        price_signal: float = 0.05,
        news_signal: float = 0.3,
        news_per_day: float = 1.5,
        late_listing_share: float = 0.1,
        suspension_rate: float = 0.002,
        language: str = "zh",
    ) -> None:
        self.n_stocks = _check_int("n_stocks", n_stocks, 1)
        start_ts, end_ts = _check_date("start", start), _check_date("end", end)
        if end_ts <= start_ts:
            raise ValueError(f"end ({end_ts.date()}) must be after start ({start_ts.date()})")
        if len(pd.bdate_range(start_ts, end_ts)) < 2:
            raise ValueError(f"start..end ({start_ts.date()}..{end_ts.date()}) must span at least 2 business days")
        self.start, self.end = str(start_ts.date()), str(end_ts.date())
        self.seed = _check_int("seed", seed, 0)
        self.price_signal = _check_real("price_signal", price_signal, 0.0, 1.0, hi_open=True)
        self.news_signal = _check_real("news_signal", news_signal, 0.0, 1.0, hi_open=True)
        if self.price_signal + self.news_signal >= 1.0:
            raise ValueError(
                f"price_signal + news_signal must be in [0, 1) (shares of variance; the rest is noise), "
                f"got {self.price_signal} + {self.news_signal} = {self.price_signal + self.news_signal}"
            )
        self.news_per_day = _check_real("news_per_day", news_per_day, 0.0, 1000.0, hi_open=False)
        self.late_listing_share = _check_real("late_listing_share", late_listing_share, 0.0, 1.0, hi_open=False)
        self.suspension_rate = _check_real("suspension_rate", suspension_rate, 0.0, 0.5, hi_open=False)
        if language not in LANGUAGES:
            raise ValueError(f"language must be one of {LANGUAGES}, got {language!r}")
        self.language = language

    def _args(self) -> dict[str, object]:
        return {
            "n_stocks": self.n_stocks,
            "start": self.start,
            "end": self.end,
            "seed": self.seed,
            "price_signal": self.price_signal,
            "news_signal": self.news_signal,
            "news_per_day": self.news_per_day,
            "late_listing_share": self.late_listing_share,
            "suspension_rate": self.suspension_rate,
            "language": self.language,
        }

    def __repr__(self) -> str:
        return "SyntheticSource(" + ", ".join(f"{k}={v!r}" for k, v in self._args().items()) + ")"

    def fingerprint(self) -> str:
        """sha256 of the generator version and every argument (floats by repr, so exact)."""
        payload = json.dumps({"version": GENERATOR_VERSION, **self._args()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def load(self) -> Panel:
        rng = np.random.default_rng(self.seed)
        calendar = pd.bdate_range(self.start, self.end).values.astype("datetime64[D]")
        S, D = self.n_stocks, len(calendar)
        stocks = _stock_names(S, self.language, rng)

        traded = self._trading_mask(rng, S, D)

        # Every (S, D) draw is made whether or not the stock trades that day, in a fixed order, so
        # prices depend only on (seed, n_stocks, calendar, listing/suspension, signals) and not on
        # how many news texts were drawn.
        market = rng.standard_t(_T_DF, D) / _T_SCALE
        idio = rng.standard_t(_T_DF, (S, D)) / _T_SCALE
        beta = rng.uniform(0.5, 1.5, S)
        load_m = _MARKET_WEIGHT * beta
        eps = (load_m[:, None] * market[None, :] + idio) / np.sqrt(1.0 + load_m**2)[:, None]
        sentiment = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=(S, D), p=SENTIMENT_PROBS)
        vol_level = np.exp(rng.uniform(math.log(0.01), math.log(0.03), S))
        alpha = rng.uniform(*_GARCH_ALPHA, S)
        garch_beta = _GARCH_PERSISTENCE - alpha
        omega = vol_level**2 * (1.0 - _GARCH_PERSISTENCE)
        price0 = np.exp(rng.uniform(math.log(3.0), math.log(2000.0), S))
        gap_noise = rng.standard_normal((S, D))
        wick_noise = np.abs(rng.standard_normal((2, S, D)))
        # Turnover (yuan) per stock, log-uniform 50M..5B a day, as across CSMD's large and small caps.
        shares_level = np.exp(rng.uniform(math.log(5e7), math.log(5e9), S)) / price0
        volume_noise = rng.standard_normal((S, D))

        a = math.sqrt(self.price_signal)
        b = math.sqrt(self.news_signal)
        c = math.sqrt(1.0 - self.price_signal - self.news_signal)
        news_factor = sentiment.astype(np.float64) / SENTIMENT_STD

        z = np.full((S, D), np.nan)
        sigma = np.full((S, D), np.nan)
        close = np.full((S, D), np.nan)
        prev_close = np.full((S, D), np.nan)
        last_z = np.zeros(S)
        last_n = np.zeros(S)
        last_var = vol_level**2
        last_close = price0.copy()
        started = np.zeros(S, dtype=bool)
        var_cap = (_SIGMA_CAP * vol_level) ** 2
        # Sequential in time (the recursion needs yesterday), vectorised across stocks.
        for d in range(D):
            on = traded[:, d]
            if not on.any():
                continue
            cont = on & started
            zd = np.where(cont, a * -last_z + b * last_n + c * eps[:, d], eps[:, d])
            var = np.where(cont, omega + (alpha * last_z**2 + garch_beta) * last_var, vol_level**2)
            var = np.minimum(var, var_cap)
            r = np.sqrt(var) * zd
            z[on, d] = zd[on]
            sigma[on, d] = np.sqrt(var[on])
            prev_close[on, d] = last_close[on]
            close[on, d] = last_close[on] * np.exp(r[on])
            last_z = np.where(on, zd, last_z)
            last_n = np.where(on, news_factor[:, d], last_n)
            last_var = np.where(on, var, last_var)
            last_close = np.where(on, close[:, d], last_close)
            started |= on

        # A part of the day's move happens overnight; the open is that gap off yesterday's close.
        open_ = prev_close * np.exp(0.3 * sigma * gap_noise)
        high = np.maximum(open_, close) * np.exp(0.5 * sigma * wick_noise[0])
        low = np.minimum(open_, close) * np.exp(-0.5 * sigma * wick_noise[1])
        # Volume rises with the size of the move and with the volatility regime.
        volume = np.round(
            shares_level[:, None]
            * np.exp(0.5 * (np.abs(z) - 0.8) + 0.3 * volume_noise)
            * (sigma / vol_level[:, None])
        )
        volume = np.maximum(volume, 100.0)

        keep = traded.any(axis=0)  # Panel.dates is the union of trading days
        prices = {
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "adj_close": close.copy(),
            "volume": volume,
        }
        for k, arr in prices.items():
            arr[~traded] = np.nan
            prices[k] = np.ascontiguousarray(arr[:, keep])
        dates = calendar[keep]
        news_stock, news_date, news_text = self._news(rng, stocks, traded[:, keep], sentiment[:, keep], dates)
        return Panel(stocks, dates, prices, news_stock, news_date, news_text)

    def _trading_mask(self, rng: np.random.Generator, S: int, D: int) -> np.ndarray:
        n_late = int(round(self.late_listing_share * S))
        if self.late_listing_share > 0 and S >= 2:
            n_late = max(n_late, 1)
        n_late = min(n_late, S - 1)  # keep at least one stock trading from day one
        late = rng.permutation(S)[:n_late]
        first_day = np.zeros(S, dtype=np.int64)
        first_day[late] = rng.integers(1, max(D // 2, 1) + 1, n_late)
        day = np.arange(D)
        listed = day[None, :] >= first_day[:, None]

        starts = rng.random((S, D)) < self.suspension_rate
        lengths = rng.integers(1, _MAX_SUSPENSION + 1, (S, D))
        suspended = np.zeros((S, D), dtype=bool)
        si, sd = np.nonzero(starts)
        for k in range(_MAX_SUSPENSION):
            m = lengths[si, sd] > k
            dd = sd[m] + k
            ok = dd < D
            suspended[si[m][ok], dd[ok]] = True
        traded = listed & ~suspended
        traded[np.arange(S), first_day] = True  # a listing day always has a bar
        return traded

    def _news(
        self,
        rng: np.random.Generator,
        stocks: list[str],
        traded: np.ndarray,
        sentiment: np.ndarray,
        dates: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        S, D = traded.shape
        counts = rng.poisson(self.news_per_day, (S, D))
        # A polar day with no text would hide the sentiment: force one so the signal is observable.
        counts = np.where(sentiment != 0, np.maximum(counts, 1), counts)
        counts = np.where(traded, counts, 0)
        # Chronological order, stocks within a day.
        flat = counts.T.ravel()
        cell = np.repeat(np.arange(flat.size), flat)
        n = cell.size
        day_idx, stock_idx = np.divmod(cell, S)
        first_of_cell = np.ones(n, dtype=bool)
        first_of_cell[1:] = cell[1:] != cell[:-1]
        s = sentiment.T.ravel()[cell].astype(np.int64)
        polar = first_of_cell | (rng.random(n) < _POLAR_TEXT_SHARE)
        pol = np.where(polar, s, 0)

        templates = TEMPLATES[self.language]
        pick = rng.random(n)
        pct = np.round(rng.uniform(5.0, 120.0, n), 1)
        small = np.round(rng.uniform(0.5, 5.0, n), 2)
        amt = np.round(rng.uniform(0.5, 50.0, n), 2)
        kk = rng.integers(1, 10, n)
        tidx = np.zeros(n, dtype=np.int64)
        for p, ts in templates.items():
            m = pol == p
            tidx[m] = np.minimum((pick[m] * len(ts)).astype(np.int64), len(ts) - 1)

        tables = {p: list(ts) for p, ts in templates.items()}
        texts = [
            tables[p][t].format(name=stocks[i], pct=f"{x:.1f}", small=f"{y:.2f}", amt=f"{w:.2f}", k=k)
            for p, t, i, x, y, w, k in zip(
                pol.tolist(), tidx.tolist(), stock_idx.tolist(), pct.tolist(), small.tolist(), amt.tolist(), kk.tolist()
            )
        ]
        return stock_idx.astype(np.int64), dates[day_idx].astype("datetime64[D]"), texts
