"""One simulated session of one futures contract: latent order flow, mid price and the MBP-10
records of its 10-level book, built as whole numpy arrays (no per-event Python loop).

Generative model, on a 1-second grid t = 0..T-1 over the session [open, close):

1. Activity. ``shape(t)`` from Chicago local time: 0.2 overnight, 0.5 in 07:00-08:30 and
   15:00-16:00 CT, and a U inside regular hours 08:30-15:00 CT, ``1 + 2 u^2`` with u going from
   -1 at the open to +1 at the close. Book events arrive at ``lam(t) = events_per_second *
   shape(t) / mean(shape)`` per second (so ``events_per_second`` is the session average) and the
   mid's noise is ``sigma(t) = sigma_day * sqrt(shape(t) / sum(shape))`` ticks, ``sigma_day``
   being the root's daily volatility in ticks.
2. Latent flow state. ``x(t)`` is AR(1) with unit variance and a 20 s memory:
   ``x(t) = phi x(t-1) + sqrt(1 - phi^2) e(t)``, ``phi = exp(-1/20)``.
3. Events. Each second holds ``Poisson(TRADE_SHARE * lam)`` trades and
   ``Poisson((1 - TRADE_SHARE) * lam)`` book updates at uniform instants (TRADE_SHARE = 0.25).
   A trade's aggressor buys with probability ``1 / (1 + exp(-KAPPA x(t)))`` (KAPPA = 1.5); its
   size is ``Geometric(1/trade_lots)`` lots.
4. Flow signal. ``F(t)`` is the signed aggressor volume of second t; ``S(t) = F(t-20) + ... +
   F(t-1)`` (strictly before t) and ``D(t) = S(t) / sqrt(20 * TRADE_SHARE * lam(t) * E[q^2])``
   is S in units of its own typical size.
5. Mid. The latent mid in ticks moves each second by ``clip(signal * BETA * D(t) * n(t) +
   n(t) z(t), -3, 3)``, z standard normal, with noise ``n(t) = sigma(t) / sqrt(1 +
   DRIFT_VARIANCE * signal^2)`` so that the drift does not inflate the volatility (BETA = 0.1,
   DRIFT_VARIANCE = 0.78, the variance the drift adds at signal 1, measured). The signed
   flow of the last 20 s thus drives the mid over the next 20 s and, through the persistence
   of x, predicts it up to about a minute ahead. With ``signal = 0`` the mid is a random walk
   independent of every trade.
6. Touch. The spread is 2 ticks when ``Phi(y(t)) > 1 - p2(t)`` (y an AR(1) with a 10 s
   memory; p2 = 0.08 where ``shape >= 1``, else 0.25) and 1 tick otherwise. Best bid
   ``floor(m)`` (1 tick) or ``round(m) - 1`` (2 ticks), ask = bid + spread. When the touch
   changes in second t it changes at one uniform instant in it: the levels it leaves are
   cancelled (C, depth 0), then the levels it reaches are added (A, depth 0) with a fresh small
   queue, one record per level: no record shows a crossed book, and after each event (F_LAST)
   the spread is 1 or 2 ticks.
7. Queues. Sizes live on absolute prices, per side. A book update picks a side (fair coin) and
   a depth d with ``P(d) ~ 0.75^d`` and sets that queue to ``base(d) * exp(0.8 fold(w))`` lots,
   ``base(d) = touch_lots * (1 + depth_growth * d)``, w the queue's own Gaussian random walk
   (steps 0.25) folded into [-1, 1]. Its action is A if the queue grew, C if it shrank (M for
   a fifth of them), its size the change. A trade prints T at the touch (book unchanged) and
   then a C record depletes the resting queue by its size, never below 1 lot (the rest is
   taken as implied liquidity). Order counts are ``ceil(size / order_lots)``.

Records carry ``ts_recv = ts_event + latency`` (log-normal, median 150 us, made non-decreasing),
``ts_in_delta`` 5-40 us, F_LAST on the last record of each event and a sequence number that
grows by 1 (10 % of the time by 2-4) per record.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter
from scipy.special import ndtr

from hft_pipeline.ingest.dbn_layout import MBP10_DTYPE, PRICE_SCALE, RTYPE_MBP_10
from hft_pipeline.simulate.profiles import MarketProfile, SessionSpec, intraday_shape

NS = 1_000_000_000
FLOW_MEMORY_S = 20.0  # persistence of the latent flow state x
FLOW_WINDOW_S = 20  # seconds of past signed volume that drive the drift
SPREAD_MEMORY_S = 10.0
TRADE_SHARE = 0.25  # share of book events that are trades
KAPPA = 1.5  # how strongly x tilts the aggressor side
BETA = 0.1  # drift per second in noise units per unit of normalised flow, at signal = 1
DRIFT_VARIANCE = 0.78  # variance the drift adds at signal = 1, in units of the noise variance
MAX_STEP_TICKS = 3.0  # cap on the latent mid's move in one second
DEPTH_DECAY = 0.75  # P(book update at depth d) ~ DEPTH_DECAY^d
QUEUE_STEP = 0.25  # std of a queue's log-size walk per update
QUEUE_SPREAD = 0.8  # queue sizes range over base * exp(+-QUEUE_SPREAD)
MODIFY_SHARE = 0.2
MEDIAN_LATENCY_NS = 150_000  # ts_recv - ts_event
MAX_LATENCY_NS = 1_000_000
GLBX_PUBLISHER_ID = 1
F_LAST = 0x80
LEVELS = 10
LOOKUP_CHUNK = 100_000  # records whose books are filled at once

# Record kinds while drafting: how a record changes the queue at its (side, price).
_NONE, _SET, _REFRESH, _CONSUME, _TRADE, _INIT = range(6)
_BID, _ASK = 0, 1
_SIDE_CODES = np.frombuffer(b"BA", dtype="S1")
_DRAFT = np.dtype(
    [
        ("t_ns", "<i8"),  # ts_event, ns UTC
        ("uid", "<i8"),  # event id: the records of an event share it
        ("sub", "<i2"),  # order inside the event
        ("action", "S1"),
        ("side", "u1"),  # _BID / _ASK
        ("depth", "u1"),
        ("price", "<i8"),  # ticks
        ("kind", "u1"),
        ("bid", "<i8"),  # touch after the record, ticks
        ("ask", "<i8"),
        ("qty", "<i8"),  # trade size, lots
    ]
)


def _ar1(rng: np.random.Generator, n: int, memory_s: float) -> np.ndarray:
    """Unit-variance AR(1) path of n seconds with e-folding time memory_s, started stationary."""
    phi = np.exp(-1.0 / memory_s)
    shocks = rng.standard_normal(n)
    shocks[1:] *= np.sqrt(1.0 - phi**2)
    return lfilter([1.0], [1.0, -phi], shocks)


@dataclass(frozen=True)
class _Paths:
    """The session's latent paths: activity, one-tick touch changes and trades."""

    lam: np.ndarray  # book events per second, for each second of the session
    touch_ns: np.ndarray  # instants of the one-tick touch changes (ns UTC), sorted
    touch_side: np.ndarray  # _BID / _ASK: the side whose best price changed
    touch_step: np.ndarray  # +1 / -1 tick
    touch_bid: np.ndarray  # best bid / ask after each change, ticks
    touch_ask: np.ndarray
    trade_ns: np.ndarray  # per trade, sorted
    trade_buy: np.ndarray
    trade_lots: np.ndarray


def _instants(rng: np.random.Generator, seconds: np.ndarray, open_ns: int) -> np.ndarray:
    """A uniform instant inside each given second of the session, at least 1 ms before its end
    so that ts_recv (latency < 1 ms) stays inside the session."""
    return open_ns + seconds * NS + rng.integers(0, NS - MAX_LATENCY_NS, seconds.size)


def _event_times(rng: np.random.Generator, counts: np.ndarray, open_ns: int) -> np.ndarray:
    """Sorted instants of counts[t] events in each second t."""
    seconds = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    return np.sort(_instants(rng, seconds, open_ns))


def _latent_paths(
    profile: MarketProfile, spec: SessionSpec, rng: np.random.Generator, rate: float, signal: float
) -> _Paths:
    n_seconds = (spec.close_ns - spec.open_ns) // NS
    seconds_utc = spec.open_ns // NS + np.arange(n_seconds)
    shape = intraday_shape(seconds_utc, spec.utc_offset_s)
    lam = rate * shape / shape.mean()
    sigma_day = profile.daily_vol * profile.price / float(spec.tick)
    sigma = sigma_day * np.sqrt(shape / shape.sum())

    x = _ar1(rng, n_seconds, FLOW_MEMORY_S)
    trade_ns = _event_times(rng, rng.poisson(TRADE_SHARE * lam), spec.open_ns)
    trade_second = (trade_ns - spec.open_ns) // NS
    buy_p = 1.0 / (1.0 + np.exp(-KAPPA * x[trade_second]))
    trade_buy = rng.random(trade_ns.size) < buy_p
    trade_lots = rng.geometric(1.0 / profile.trade_lots, trade_ns.size).astype(np.int64)

    signed = np.where(trade_buy, trade_lots, -trade_lots).astype(float)
    flow = np.bincount(trade_second, weights=signed, minlength=n_seconds)
    past = np.r_[0.0, np.cumsum(flow)]  # past[t] = F(0) + ... + F(t-1)
    window_sum = past[:-1] - past[np.maximum(np.arange(n_seconds) - FLOW_WINDOW_S, 0)]
    second_moment = np.mean(trade_lots.astype(float) ** 2) if trade_lots.size else 1.0
    typical = np.sqrt(FLOW_WINDOW_S * TRADE_SHARE * lam * second_moment)
    # The flow-driven drift adds variance; shrinking the noise keeps the mid's volatility
    # about the same whatever the signal.
    noise = sigma / np.sqrt(1.0 + DRIFT_VARIANCE * signal**2)
    drift = signal * BETA * (window_sum / typical) * noise
    steps = drift + noise * rng.standard_normal(n_seconds)
    steps = np.clip(steps, -MAX_STEP_TICKS, MAX_STEP_TICKS)
    mid = spec.start_ticks + 0.5 + np.cumsum(steps)

    wide_p = np.where(shape >= 1.0, 0.08, 0.25)
    wide = ndtr(_ar1(rng, n_seconds, SPREAD_MEMORY_S)) > 1.0 - wide_p
    bid = np.where(wide, np.rint(mid) - 1, np.floor(mid)).astype(np.int64)
    ask = bid + np.where(wide, 2, 1)
    touch = _touch_changes(rng, bid, ask, spec)
    return _Paths(lam, *touch, trade_ns, trade_buy, trade_lots)


def _touch_changes(
    rng: np.random.Generator, bid: np.ndarray, ask: np.ndarray, spec: SessionSpec
) -> tuple[np.ndarray, ...]:
    """Splits each second's move of the touch into one-tick changes, all at one instant of that
    second (one event). Inside it, the j-th change that leaves a level (bid down, ask up) comes
    before the j-th change that reaches one, which keeps every intermediate book uncrossed."""
    seconds, ranks, sides, steps = [], [], [], []
    for side, path, start in ((_BID, bid, spec.start_ticks), (_ASK, ask, spec.start_ticks + 1)):
        move = np.diff(path, prepend=start)
        count = np.abs(move)
        second = np.repeat(np.arange(path.size, dtype=np.int64), count)
        j = np.arange(second.size) - np.repeat(np.cumsum(count) - count, count)
        step = np.repeat(np.sign(move), count)
        leaves = step < 0 if side == _BID else step > 0
        seconds.append(second)
        ranks.append(2 * j + ~leaves)
        sides.append(np.full(second.size, side, np.uint8))
        steps.append(step)
    second, rank, side, step = (np.concatenate(a) for a in (seconds, ranks, sides, steps))
    order = np.lexsort((side, rank, second))
    second, side, step = second[order], side[order], step[order]
    touch_ns = _instants(rng, np.arange(bid.size, dtype=np.int64), spec.open_ns)[second]
    touch_bid = spec.start_ticks + np.cumsum(np.where(side == _BID, step, 0))
    touch_ask = spec.start_ticks + 1 + np.cumsum(np.where(side == _ASK, step, 0))
    return touch_ns, side, step, touch_bid, touch_ask


def _touch_at(paths: _Paths, spec: SessionSpec, t_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best bid/ask (ticks) in force at each instant (a change at that very instant included)."""
    last = np.searchsorted(paths.touch_ns, t_ns, side="right") - 1
    bid = np.where(last < 0, spec.start_ticks, paths.touch_bid[last])
    ask = np.where(last < 0, spec.start_ticks + 1, paths.touch_ask[last])
    return bid, ask


def _book_update_drafts(
    rng: np.random.Generator, paths: _Paths, spec: SessionSpec, uid0: int
) -> np.ndarray:
    t_ns = _event_times(rng, rng.poisson((1.0 - TRADE_SHARE) * paths.lam), spec.open_ns)
    draft = np.zeros(t_ns.size, _DRAFT)
    draft["t_ns"] = t_ns
    draft["uid"] = uid0 + np.arange(t_ns.size)
    draft["bid"], draft["ask"] = _touch_at(paths, spec, t_ns)
    side = rng.integers(0, 2, t_ns.size)
    weights = DEPTH_DECAY ** np.arange(LEVELS)
    depth = rng.choice(LEVELS, t_ns.size, p=weights / weights.sum())
    draft["side"], draft["depth"], draft["kind"] = side, depth, _SET
    draft["price"] = np.where(side == _BID, draft["bid"] - depth, draft["ask"] + depth)
    return draft


def _trade_drafts(paths: _Paths, spec: SessionSpec, uid0: int) -> np.ndarray:
    """Two records per trade: the print (T, aggressor side) and the resting queue's depletion."""
    n = paths.trade_ns.size
    bid, ask = _touch_at(paths, spec, paths.trade_ns)
    draft = np.zeros((n, 2), _DRAFT)
    for column in range(2):
        draft[:, column]["t_ns"] = paths.trade_ns
        draft[:, column]["uid"] = uid0 + np.arange(n)
        draft[:, column]["sub"] = column
        draft[:, column]["bid"], draft[:, column]["ask"] = bid, ask
        draft[:, column]["price"] = np.where(paths.trade_buy, ask, bid)
        draft[:, column]["qty"] = paths.trade_lots
    draft[:, 0]["action"], draft[:, 0]["kind"] = b"T", _NONE
    draft[:, 0]["side"] = np.where(paths.trade_buy, _BID, _ASK)  # aggressor
    draft[:, 1]["action"], draft[:, 1]["kind"] = b"C", _TRADE
    draft[:, 1]["side"] = np.where(paths.trade_buy, _ASK, _BID)  # resting side
    return draft.reshape(-1)


def _touch_drafts(paths: _Paths, uid0: int) -> np.ndarray:
    """The touch moves, one event per second that has one and one record per tick: C of a level
    left behind or A of a new best level (with a fresh queue)."""
    draft = np.zeros(paths.touch_ns.size, _DRAFT)
    starts = np.r_[True, paths.touch_ns[1:] != paths.touch_ns[:-1]]
    draft["t_ns"] = paths.touch_ns
    draft["uid"] = uid0 + np.cumsum(starts) - 1
    draft["sub"] = np.arange(draft.size) - np.maximum.accumulate(
        np.where(starts, np.arange(draft.size), 0)
    )
    draft["side"] = paths.touch_side
    draft["bid"], draft["ask"] = paths.touch_bid, paths.touch_ask
    after = np.where(paths.touch_side == _BID, paths.touch_bid, paths.touch_ask)
    leaves = np.where(paths.touch_side == _BID, paths.touch_step < 0, paths.touch_step > 0)
    draft["price"] = np.where(leaves, after - paths.touch_step, after)
    draft["kind"] = np.where(leaves, _CONSUME, _REFRESH)
    draft["action"] = np.where(leaves, b"C", b"A")
    return draft


def _fold(walk: np.ndarray) -> np.ndarray:
    """Reflects an unbounded walk into [-1, 1] (a triangle wave of period 4)."""
    phase = np.mod(walk + 1.0, 4.0)
    return np.where(phase < 2.0, phase - 1.0, 3.0 - phase)


@dataclass(frozen=True)
class _QueueHistory:
    """Every queue's size after every change, sorted by (queue, record)."""

    order_key: np.ndarray  # queue * (n_records + 1) + record index + 1 (0: the opening book)
    size: np.ndarray  # lots
    low: int  # lowest price (ticks) of the queues; queue = side * width + price - low
    width: int
    n_records: int

    def sizes(self, side: int, prices: np.ndarray, records: np.ndarray) -> np.ndarray:
        """Size of the queue (side, prices[i, k]) just after record records[i]."""
        queue = side * self.width + prices - self.low
        wanted = queue * (self.n_records + 1) + records[:, None] + 1
        return self.size[np.searchsorted(self.order_key, wanted, side="right") - 1]


def _queue_history(
    draft: np.ndarray, profile: MarketProfile, spec: SessionSpec, rng: np.random.Generator
) -> tuple[_QueueHistory, np.ndarray]:
    """Sizes of all queues over the session, and each record's change of its queue (lots)."""
    low = int(min(draft["bid"].min(initial=spec.start_ticks), spec.start_ticks)) - LEVELS
    high = int(max(draft["ask"].max(initial=spec.start_ticks + 1), spec.start_ticks + 1)) + LEVELS
    width, n_records = high - low + 1, draft.size
    updates = np.flatnonzero(draft["kind"] != _NONE)
    prices = low + np.arange(width)
    # The opening book: queues on the visible side of the first touch, none on the other.
    opening_depth = np.r_[spec.start_ticks - prices, prices - (spec.start_ticks + 1)]
    updated_queue = draft["side"][updates].astype(np.int64) * width + draft["price"][updates] - low
    queue = np.r_[np.arange(2 * width), updated_queue]
    record = np.r_[np.full(2 * width, -1), updates]
    kind = np.r_[np.full(2 * width, _INIT), draft["kind"][updates]]
    depth = np.r_[opening_depth, draft["depth"][updates]]
    qty = np.r_[np.zeros(2 * width, np.int64), draft["qty"][updates]]
    walk_step = np.r_[rng.uniform(-1, 1, 2 * width), rng.normal(0, QUEUE_STEP, updates.size)]
    fresh = rng.uniform(0.05, 0.35, queue.size)

    order_key = queue * (n_records + 1) + record + 1
    order = np.argsort(order_key)
    order_key, queue, record, kind, depth, qty = (
        a[order] for a in (order_key, queue, record, kind, depth, qty)
    )
    walk_step = np.where(np.isin(kind, (_INIT, _SET)), walk_step[order], 0.0)
    index = np.arange(queue.size)
    first = np.maximum.accumulate(np.where(np.r_[True, queue[1:] != queue[:-1]], index, 0))
    walk = np.cumsum(walk_step)
    walk = walk - walk[first] + walk_step[first]

    base = profile.touch_lots * (1.0 + profile.depth_growth * np.clip(depth, 0, LEVELS - 1))
    settled = base * np.exp(QUEUE_SPREAD * _fold(walk))
    target = np.where(kind == _REFRESH, profile.touch_lots * fresh[order], settled)
    size = np.maximum(1, np.rint(target)).astype(np.int64)
    size[(kind == _CONSUME) | ((kind == _INIT) & (depth < 0))] = 0
    # A trade depletes what its queue held after the last other change, down to 1 lot at least.
    is_trade = kind == _TRADE
    anchor = np.maximum.accumulate(np.where(is_trade, 0, index))
    taken = np.cumsum(np.where(is_trade, qty, 0))
    size = np.where(is_trade, np.maximum(1, size[anchor] - (taken - taken[anchor])), size)

    change = np.zeros(n_records, np.int64)
    changed = kind != _INIT
    change[record[changed]] = (size - np.r_[0, size[:-1]])[changed]
    return _QueueHistory(order_key, size, low, width, n_records), change


def simulate_session(
    profile: MarketProfile,
    spec: SessionSpec,
    rng: np.random.Generator,
    *,
    signal: float,
    events_per_second: float,
) -> np.ndarray:
    """MBP-10 records of one contract over one session, following the module's model.

    Parameters
    ----------
    profile : MarketProfile
        Price level, volatility and queue/trade sizes of the root.
    spec : SessionSpec
        Session bounds (ns UTC), opening mid, tick, instrument id and first sequence number.
    rng : numpy.random.Generator
        The only source of randomness: the same generator state gives the same records.
    signal : float
        Strength of the planted flow -> future-return relation, in [0, 1].
    events_per_second : float
        Session-average rate of book events (trades included) before ``spec.activity``.

    Returns
    -------
    numpy.ndarray
        ``dbn_layout.MBP10_DTYPE`` records sorted by ``ts_recv``, then sequence.
    """
    tick_fixed = spec.tick * PRICE_SCALE
    if tick_fixed.denominator != 1:
        raise ValueError(f"tick {spec.tick} is not a whole number of 1e-9 price units")
    paths = _latent_paths(profile, spec, rng, events_per_second * spec.activity, signal)
    # Touch changes take the lowest event ids: at an equal instant they come first, as the
    # other events there already see the new touch.
    touches = _touch_drafts(paths, uid0=0)
    books = _book_update_drafts(rng, paths, spec, uid0=int(touches["uid"].max(initial=-1)) + 1)
    trades = _trade_drafts(paths, spec, uid0=int(books["uid"].max(initial=-1)) + 1)
    draft = np.concatenate([touches, books, trades])
    draft = draft[np.lexsort((draft["sub"], draft["uid"], draft["t_ns"]))]
    history, change = _queue_history(draft, profile, spec, rng)

    is_set = draft["kind"] == _SET
    modify = rng.random(draft.size) < MODIFY_SHARE
    draft["action"][is_set] = np.where(modify, b"M", np.where(change > 0, b"A", b"C"))[is_set]
    size = np.where(draft["kind"] == _NONE, draft["qty"], np.abs(change))
    rows = np.flatnonzero(size > 0)  # an update that left its queue unchanged is no record
    return _records(draft[rows], size[rows], rows, history, spec, int(tick_fixed), profile, rng)


def _records(
    draft: np.ndarray,
    size: np.ndarray,
    rows: np.ndarray,
    history: _QueueHistory,
    spec: SessionSpec,
    tick_fixed: int,
    profile: MarketProfile,
    rng: np.random.Generator,
) -> np.ndarray:
    """Packs drafted records (already in order) into MBP10_DTYPE with their full books."""
    n = draft.size
    records = np.zeros(n, MBP10_DTYPE)
    records["length"] = MBP10_DTYPE.itemsize // 4
    records["rtype"] = RTYPE_MBP_10
    records["publisher_id"] = GLBX_PUBLISHER_ID
    records["instrument_id"] = spec.instrument_id
    records["price"] = draft["price"] * tick_fixed
    records["size"] = size
    records["action"] = draft["action"]
    records["side"] = _SIDE_CODES[draft["side"]]
    records["depth"] = draft["depth"]
    last_of_event = np.r_[draft["uid"][1:] != draft["uid"][:-1], True]
    records["flags"] = np.where(last_of_event, F_LAST, 0)

    n_events = int(draft["uid"].max(initial=-1)) + 1
    latency = rng.lognormal(np.log(MEDIAN_LATENCY_NS), 0.5, n_events).astype(np.int64)
    latency = np.clip(latency, 1_000, MAX_LATENCY_NS - 1)[draft["uid"]]
    records["ts_event"] = draft["t_ns"]
    records["ts_recv"] = np.maximum.accumulate(draft["t_ns"] + latency)
    records["ts_in_delta"] = rng.integers(5_000, 40_000, n_events)[draft["uid"]]
    gaps = 1 + np.where(rng.random(n) < 0.1, rng.integers(1, 4, n), 0)
    records["sequence"] = spec.first_sequence + np.cumsum(gaps) - gaps[:1]

    levels = records["levels"]
    k = np.arange(LEVELS)
    for first in range(0, n, LOOKUP_CHUNK):  # bounds the (rows, 10) temporaries
        chunk = slice(first, first + LOOKUP_CHUNK)
        bid_px = draft["bid"][chunk, None] - k
        ask_px = draft["ask"][chunk, None] + k
        bid_sz = history.sizes(_BID, bid_px, rows[chunk])
        ask_sz = history.sizes(_ASK, ask_px, rows[chunk])
        levels["bid_px"][chunk] = bid_px * tick_fixed
        levels["ask_px"][chunk] = ask_px * tick_fixed
        levels["bid_sz"][chunk], levels["ask_sz"][chunk] = bid_sz, ask_sz
        levels["bid_ct"][chunk] = np.minimum(bid_sz, np.ceil(bid_sz / profile.order_lots))
        levels["ask_ct"][chunk] = np.minimum(ask_sz, np.ceil(ask_sz / profile.order_lots))
    return records
