//! Eviction on a trace (issue 15): the compute time a size-limited cache spends on its misses
//! under the library's two policies, beside exact in-memory simulations of LRU, LFU and
//! GreedyDual-Size-Frequency.
//!
//! ```text
//! cargo bench -p memo-cache-bench --bench trace              # full run (~2 min of CPU)
//! cargo bench -p memo-cache-bench --bench trace -- --quick   # short run (or MEMO_BENCH_QUICK=1)
//! cargo bench -p memo-cache-bench --bench trace -- --seed 7  # another trace
//! cargo bench -p memo-cache-bench --bench trace -- --simulated-only  # in a second, no targets
//! ```
//!
//! # The trace
//!
//! Items with a value size and a compute cost, each log-uniform and independent of the other
//! and of popularity: values of 1 KiB to 1 MiB (stored as `Vec<u8>`, so those past the inline
//! threshold go to blob files), costs of 1 ms to 10 min. Requests pick items with Zipf
//! popularity. Everything comes from one seeded splitmix64, so a seed is a trace. The first
//! part of the requests is a warm-up: replayed, not counted.
//!
//! # The replay
//!
//! Each policy sees the same requests at budgets of 5, 10 and 25% of the working set (all
//! items' stored bytes). A request is a hit or a miss; a miss "computes" the item (no sleep:
//! its cost is counted) and stores it. What a row reports is the compute time of the counted
//! misses.
//!
//! - `memo-cache` rows replay through a real [`Cache`] on a temp dir, with
//!   [`CacheBuilder::size_limit`](memo_cache::CacheBuilder::size_limit) and
//!   [`Policy::Lru`] or [`Policy::CostAware`]: a miss is `get` returning `None`, then
//!   `put_timed` with the item's cost. Its clock is a [`ManualClock`] that moves 1 ms per
//!   request, so last-use times, and so LRU order, are exact instead of tied within a
//!   millisecond.
//! - `simulated` rows are exact in-memory caches: LRU; LFU (hits since the entry was stored,
//!   ties least recently used first: the classic in-cache LFU, which the library does not offer);
//!   GDSF as Cherkasova defines it (priority = clock + frequency x cost / size, the clock raised
//!   to each evicted priority); and GDSF as the library computes it, with 256 bytes added to
//!   every size for the entry's row, to tell that difference apart.
//!
//! # Size accounting
//!
//! Sizes are stored bytes: the value's length plus the one format byte of the stored encoding,
//! in the simulations as in the library. The library counts more against its limit: the index
//! pages its entries take past the first 64 KiB, less the inline values already counted (see
//! `CacheBuilder::size_limit`). So that a real cache holds the same stored bytes as the
//! simulations, its warm-up runs at `size_limit = budget` and measures that overhead (the
//! library's formula, read through a SQLite connection of our own) over its second half; the
//! cache is then opened again on the same directory at `budget + allowance` for the counted
//! requests. The table shows the allowance, and the stored bytes each replay held on average
//! after the warm-up ("held") against the budget.
//!
//! # Targets
//!
//! At a 10% budget, cost-aware eviction through memo-cache recomputes at most 0.7x what LRU
//! through memo-cache does, and at most 1.05x the exact GDSF simulation. GDSF's figures can jump
//! with a small change of budget (an expensive popular item fits, or does not), and the real
//! cache's index overhead moves with the entries it holds; a last line shows how far the exact
//! simulation moves between 98% and 102% of the budget, to read the second ratio against.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use memo_cache::{Cache, Function, ManualClock, Policy};

// ---- The trace -------------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Plan {
    items: usize,
    requests: usize,
    warmup: usize,
    zipf: f64,
}

const FULL: Plan = Plan {
    items: 2000,
    requests: 32_000,
    warmup: 8000,
    zipf: 0.9,
};

const QUICK: Plan = Plan {
    items: 600,
    requests: 8000,
    warmup: 2000,
    zipf: 0.9,
};

const MIN_VALUE: f64 = 1024.0;
const MAX_VALUE: f64 = 1024.0 * 1024.0;
const MIN_COST_US: f64 = 1e3;
const MAX_COST_US: f64 = 600e6;

/// Budgets, as fractions of the working set.
const BUDGETS: [f64; 3] = [0.05, 0.10, 0.25];
/// The budget the targets are checked at.
const TARGET_BUDGET: f64 = 0.10;
/// Cost-aware through memo-cache against LRU through memo-cache.
const TARGET_VS_LRU: f64 = 0.70;
/// Cost-aware through memo-cache against the exact GDSF simulation: within 5%.
const TARGET_VS_GDSF: f64 = 1.05;

/// Held bytes are sampled every this many counted requests.
const SAMPLE_EVERY: usize = 250;

/// The byte format of a stored `Vec<u8>`: its bytes, then one format byte.
const FORMAT_BYTES: u64 = 1;

/// The library's allowance for an entry's row in its priority (`index::insert_entry`).
const ROW_BYTES: f64 = 256.0;

static TRACE: Function = Function::new("bench::trace", "v1", "Vec<u8>");

/// splitmix64 (Steele, Lea, Flood 2014): a few lines, and no dependency for a seeded trace.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn log_uniform(&mut self, low: f64, high: f64) -> f64 {
        (low.ln() + self.unit() * (high.ln() - low.ln())).exp()
    }
}

#[derive(Clone, Copy)]
struct Item {
    /// The value's length in bytes.
    len: usize,
    cost_us: u64,
}

impl Item {
    /// What the library stores and counts: the value and its format byte.
    fn stored(&self) -> u64 {
        self.len as u64 + FORMAT_BYTES
    }
}

struct Trace {
    items: Vec<Item>,
    requests: Vec<u32>,
    warmup: usize,
}

impl Trace {
    fn new(plan: Plan, seed: u64) -> Trace {
        let mut rng = Rng(seed);
        let items = (0..plan.items)
            .map(|_| Item {
                len: rng.log_uniform(MIN_VALUE, MAX_VALUE) as usize,
                cost_us: rng.log_uniform(MIN_COST_US, MAX_COST_US) as u64,
            })
            .collect();
        // Item i has popularity rank i + 1; sizes and costs are drawn apart from it.
        let mut cdf: Vec<f64> = Vec::with_capacity(plan.items);
        let mut sum = 0.0;
        for rank in 1..=plan.items {
            sum += (rank as f64).powf(-plan.zipf);
            cdf.push(sum);
        }
        let requests = (0..plan.requests)
            .map(|_| {
                let u = rng.unit() * sum;
                cdf.partition_point(|&c| c <= u).min(plan.items - 1) as u32
            })
            .collect();
        Trace {
            items,
            requests,
            warmup: plan.warmup,
        }
    }

    fn working_set(&self) -> u64 {
        self.items.iter().map(Item::stored).sum()
    }

    fn counted(&self) -> usize {
        self.requests.len() - self.warmup
    }
}

// ---- Outcomes --------------------------------------------------------------------------------

/// What a replay's counted requests cost.
#[derive(Clone, Copy, Default)]
struct Outcome {
    misses: u64,
    recomputed_us: u64,
    /// Mean stored bytes held after the warm-up.
    held: f64,
    elapsed: Duration,
    /// What the real cache was given past the budget.
    allowance: Option<u64>,
}

#[derive(Default)]
struct Mean {
    sum: f64,
    samples: u64,
}

impl Mean {
    fn add(&mut self, x: f64) {
        self.sum += x;
        self.samples += 1;
    }

    fn value(&self) -> f64 {
        self.sum / self.samples.max(1) as f64
    }
}

/// Counts the misses after the warm-up and samples the bytes held.
struct Tally<'a> {
    trace: &'a Trace,
    outcome: Outcome,
    held: Mean,
}

impl<'a> Tally<'a> {
    fn new(trace: &'a Trace) -> Self {
        Tally {
            trace,
            outcome: Outcome::default(),
            held: Mean::default(),
        }
    }

    fn counts(&self, n: usize) -> bool {
        n >= self.trace.warmup
    }

    fn miss(&mut self, n: usize, item: u32) {
        if self.counts(n) {
            self.outcome.misses += 1;
            self.outcome.recomputed_us += self.trace.items[item as usize].cost_us;
        }
    }

    fn wants_sample(&self, n: usize) -> bool {
        self.counts(n) && (n - self.trace.warmup).is_multiple_of(SAMPLE_EVERY)
    }

    fn sample(&mut self, held: u64) {
        self.held.add(held as f64);
    }

    fn finish(mut self, started: Instant) -> Outcome {
        self.outcome.held = self.held.value();
        self.outcome.elapsed = started.elapsed();
        self.outcome
    }
}

// ---- Simulations -----------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Order {
    Lru,
    Lfu,
    /// GreedyDual-Size-Frequency, `floor` bytes added to every size.
    Gdsf {
        floor: f64,
    },
}

#[derive(Clone, Copy)]
struct Held {
    priority: f64,
    last: u64,
    hits: u64,
}

/// An exact cache of `budget` stored bytes, evicting lowest (priority, last use) first.
struct Sim<'a> {
    order: Order,
    items: &'a [Item],
    budget: u64,
    used: u64,
    /// GDSF's inflation value: the priority of the last entry evicted.
    clock: f64,
    held: Vec<Option<Held>>,
    /// (priority as ordered bits, last use, item); priorities are never negative, so their bits
    /// order as they do.
    queue: BTreeSet<(u64, u64, u32)>,
}

impl<'a> Sim<'a> {
    fn new(order: Order, items: &'a [Item], budget: u64) -> Self {
        Sim {
            order,
            items,
            budget,
            used: 0,
            clock: 0.0,
            held: vec![None; items.len()],
            queue: BTreeSet::new(),
        }
    }

    fn priority(&self, item: u32, hits: u64) -> f64 {
        let it = &self.items[item as usize];
        match self.order {
            Order::Lru => 0.0,
            Order::Lfu => (1 + hits) as f64,
            // In the library's order of operations: an integer product, then a real division.
            Order::Gdsf { floor } => {
                self.clock + ((1 + hits) * it.cost_us) as f64 / (it.stored() as f64 + floor)
            }
        }
    }

    fn enqueue(&mut self, item: u32, held: Held) {
        self.queue
            .insert((held.priority.to_bits(), held.last, item));
        self.held[item as usize] = Some(held);
    }

    /// Requests `item` at `tick`; true on a hit. A miss stores the item, evicting first.
    fn request(&mut self, item: u32, tick: u64) -> bool {
        if let Some(held) = self.held[item as usize] {
            self.queue
                .remove(&(held.priority.to_bits(), held.last, item));
            let hits = held.hits + 1;
            let priority = self.priority(item, hits);
            self.enqueue(
                item,
                Held {
                    priority,
                    last: tick,
                    hits,
                },
            );
            return true;
        }
        let size = self.items[item as usize].stored();
        if size > self.budget {
            return false;
        }
        while self.used + size > self.budget {
            let (bits, _, victim) = self.queue.pop_first().expect("something to evict");
            self.held[victim as usize] = None;
            self.used -= self.items[victim as usize].stored();
            self.clock = self.clock.max(f64::from_bits(bits));
        }
        let priority = self.priority(item, 0);
        self.enqueue(
            item,
            Held {
                priority,
                last: tick,
                hits: 0,
            },
        );
        self.used += size;
        false
    }
}

fn simulate(trace: &Trace, order: Order, budget: u64) -> Outcome {
    let started = Instant::now();
    let mut sim = Sim::new(order, &trace.items, budget);
    let mut tally = Tally::new(trace);
    for (n, &item) in trace.requests.iter().enumerate() {
        if !sim.request(item, n as u64) {
            tally.miss(n, item);
        }
        if tally.wants_sample(n) {
            tally.sample(sim.used);
        }
    }
    tally.finish(started)
}

// ---- Replays through memo-cache --------------------------------------------------------------

/// The index overhead the library counts against its limit (`index::overhead`): pages in use
/// past the first 64 KiB, less the inline values. Read through a connection of our own.
fn index_overhead(dir: &Path, cache: &Cache) -> u64 {
    const UNCOUNTED_INDEX_BYTES: u64 = 64 * 1024;
    let conn = rusqlite::Connection::open_with_flags(
        dir.join(memo_cache::INDEX_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the index");
    let pragma = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as u64;
    let used = pragma("PRAGMA page_count") - pragma("PRAGMA freelist_count");
    let stats = cache.stats().expect("stats");
    (used * pragma("PRAGMA page_size"))
        .saturating_sub(UNCOUNTED_INDEX_BYTES)
        .saturating_sub(stats.bytes - stats.blob_bytes)
}

/// Requests `item` from `cache`; a miss stores it, as computed in its cost. True on a hit.
fn request(cache: &Cache, item: u32, it: &Item) -> bool {
    let args = (item,);
    if cache.get::<_, Vec<u8>>(&TRACE, &args).unwrap().is_some() {
        return true;
    }
    cache
        .put_timed(
            &TRACE,
            &args,
            &vec![0u8; it.len],
            Duration::from_micros(it.cost_us),
        )
        .unwrap();
    false
}

/// Replays the trace through a real cache in a fresh directory under `root`. The warm-up runs
/// at `size_limit = budget` and measures the index overhead over its second half; the cache is
/// then opened again, on the same directory, at `budget` plus that allowance for the counted
/// requests (see "Size accounting" above).
fn through_memo_cache(trace: &Trace, policy: Policy, budget: u64, root: &Path) -> Outcome {
    let dir = tempfile::tempdir_in(root).unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let open = |limit: u64| {
        Cache::builder(dir.path())
            .size_limit(limit)
            .policy(policy)
            .clock(clock.clone())
            .open()
            .unwrap()
    };
    let started = Instant::now();
    let mut tally = Tally::new(trace);
    let mut overhead = Mean::default();
    let mut cache = open(budget);
    for (n, &item) in trace.requests.iter().enumerate() {
        if n == trace.warmup {
            let allowance = overhead.value() as u64;
            tally.outcome.allowance = Some(allowance);
            drop(cache);
            cache = open(budget + allowance);
        }
        clock.advance(Duration::from_millis(1));
        if !request(&cache, item, &trace.items[item as usize]) {
            tally.miss(n, item);
        }
        if n >= trace.warmup / 2 && n < trace.warmup && n.is_multiple_of(SAMPLE_EVERY) {
            overhead.add(index_overhead(dir.path(), &cache) as f64);
        }
        if tally.wants_sample(n) {
            tally.sample(cache.stats().unwrap().bytes);
        }
    }
    tally.finish(started)
}

// ---- Report ----------------------------------------------------------------------------------

struct Row {
    budget: f64,
    name: &'static str,
    outcome: Outcome,
}

fn hours(us: u64) -> f64 {
    us as f64 / 3.6e9
}

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

fn print_header() {
    println!(
        "{:<7} {:<30} {:>7} {:>6} {:>12} {:>9} {:>9} {:>6} {:>10} {:>8}",
        "budget",
        "policy",
        "misses",
        "miss%",
        "recomputed",
        "x LRU sim",
        "x GDSF sim",
        "held",
        "allowance",
        "time"
    );
}

fn print_row(row: &Row, counted: usize, budget_bytes: u64, lru: &Outcome, gdsf: &Outcome) {
    let o = &row.outcome;
    let ratio = |r: &Outcome| o.recomputed_us as f64 / r.recomputed_us as f64;
    println!(
        "{:<7} {:<30} {:>7} {:>5.1}% {:>10.1} h {:>9.3} {:>10.3} {:>5.1}% {:>10} {:>7.1}s",
        format!("{:.0}%", row.budget * 100.0),
        row.name,
        o.misses,
        o.misses as f64 * 100.0 / counted as f64,
        hours(o.recomputed_us),
        ratio(lru),
        ratio(gdsf),
        o.held * 100.0 / budget_bytes as f64,
        o.allowance
            .map_or(String::from("-"), |a| format!("{:.2} MiB", mib(a as f64))),
        o.elapsed.as_secs_f64(),
    );
}

fn find<'r>(rows: &'r [Row], budget: f64, name: &str) -> &'r Outcome {
    &rows
        .iter()
        .find(|r| r.budget == budget && r.name == name)
        .expect("row")
        .outcome
}

const LRU_SIM: &str = "LRU, simulated";
const LFU_SIM: &str = "LFU, simulated";
const GDSF_SIM: &str = "GDSF, simulated (exact)";
const GDSF_256_SIM: &str = "GDSF +256 B, simulated";
const LRU_REAL: &str = "LRU, memo-cache";
const COST_REAL: &str = "cost-aware, memo-cache";

/// Budgets around the target's, as fractions of it: the exact GDSF simulation at each shows how
/// far the reference moves with the bytes held alone.
const NEARBY: [f64; 6] = [0.98, 0.99, 0.995, 1.005, 1.01, 1.02];

/// The exact GDSF simulation's recomputed time at [`NEARBY`] budgets: (least, most).
fn nearby_gdsf(trace: &Trace, budget: u64) -> (u64, u64) {
    NEARBY
        .iter()
        .map(|f| {
            simulate(
                trace,
                Order::Gdsf { floor: 0.0 },
                (budget as f64 * f) as u64,
            )
            .recomputed_us
        })
        .fold((u64::MAX, 0), |(lo, hi), x| (lo.min(x), hi.max(x)))
}

fn check_targets(rows: &[Row], trace: &Trace) {
    let lru = find(rows, TARGET_BUDGET, LRU_REAL);
    let gdsf = find(rows, TARGET_BUDGET, GDSF_SIM);
    let cost = find(rows, TARGET_BUDGET, COST_REAL);
    let ratio = |a: &Outcome, b: &Outcome| a.recomputed_us as f64 / b.recomputed_us as f64;
    println!(
        "\ntargets at a {:.0}% budget (compute time recomputed, ratios within this run):",
        TARGET_BUDGET * 100.0
    );
    let report = |name: &str, value: f64, ok: bool| {
        println!(
            "  [{}] {name}: {value:.3}",
            if ok { "met " } else { "MISS" }
        )
    };
    let r = ratio(cost, lru);
    report(
        &format!("cost-aware / LRU, both through memo-cache (<= {TARGET_VS_LRU})"),
        r,
        r <= TARGET_VS_LRU,
    );
    let r = ratio(cost, gdsf);
    report(
        &format!(
            "cost-aware through memo-cache / exact GDSF simulation (<= {TARGET_VS_GDSF}: within 5%)"
        ),
        r,
        r <= TARGET_VS_GDSF,
    );
    let budget = (trace.working_set() as f64 * TARGET_BUDGET) as u64;
    let (lo, hi) = nearby_gdsf(trace, budget);
    println!(
        "  the exact GDSF simulation at {:.0}-{:.0}% of this budget recomputes {:.1}-{:.1} h \
         (x{:.3}-{:.3} of it at 100%): how far the reference moves with the bytes held alone",
        NEARBY[0] * 100.0,
        NEARBY[NEARBY.len() - 1] * 100.0,
        hours(lo),
        hours(hi),
        lo as f64 / gdsf.recomputed_us as f64,
        hi as f64 / gdsf.recomputed_us as f64,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let quick = args.iter().any(|a| a == "--quick")
        || std::env::var_os("MEMO_BENCH_QUICK").is_some_and(|v| v != "0");
    let plan = if quick { QUICK } else { FULL };
    let real = !args.iter().any(|a| a == "--simulated-only");
    let seed = args
        .iter()
        .position(|a| a == "--seed")
        .and_then(|at| args.get(at + 1))
        .map_or(1, |s| s.parse().expect("--seed takes a number"));
    let root = tempfile::Builder::new()
        .prefix("memo-cache-trace-")
        .tempdir_in(std::env::temp_dir())
        .unwrap();

    let trace = Trace::new(plan, seed);
    let working_set = trace.working_set();
    println!(
        "eviction on a trace ({} run): {} items, values 1 KiB-1 MiB and costs 1 ms-10 min \
         log-uniform, working set {:.1} MiB; {} requests, Zipf s = {}, the first {} a warm-up; seed {seed}",
        if quick { "quick" } else { "full" },
        plan.items,
        mib(working_set as f64),
        plan.requests,
        plan.zipf,
        plan.warmup,
    );
    println!(
        "recomputed: compute time of the counted misses; x LRU sim, x GDSF sim: against the \
         simulated LRU and exact GDSF rows of the same budget; held: mean stored bytes / budget\n"
    );
    print_header();
    let mut rows: Vec<Row> = Vec::new();
    for budget in BUDGETS {
        let bytes = (working_set as f64 * budget) as u64;
        let mut add = |name: &'static str, outcome: Outcome| {
            rows.push(Row {
                budget,
                name,
                outcome,
            })
        };
        add(LRU_SIM, simulate(&trace, Order::Lru, bytes));
        add(LFU_SIM, simulate(&trace, Order::Lfu, bytes));
        add(
            GDSF_SIM,
            simulate(&trace, Order::Gdsf { floor: 0.0 }, bytes),
        );
        add(
            GDSF_256_SIM,
            simulate(&trace, Order::Gdsf { floor: ROW_BYTES }, bytes),
        );
        if real {
            add(
                LRU_REAL,
                through_memo_cache(&trace, Policy::Lru, bytes, root.path()),
            );
            add(
                COST_REAL,
                through_memo_cache(&trace, Policy::CostAware, bytes, root.path()),
            );
        }
        let lru = *find(&rows, budget, LRU_SIM);
        let gdsf = *find(&rows, budget, GDSF_SIM);
        for row in rows.iter().filter(|r| r.budget == budget) {
            print_row(row, trace.counted(), bytes, &lru, &gdsf);
        }
        println!();
    }
    if real {
        check_targets(&rows, &trace);
    }
}
