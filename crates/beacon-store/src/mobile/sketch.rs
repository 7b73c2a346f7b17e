//! Mergeable quantile sketches for trace durations, and a bottom-k sample of device hashes.
//!
//! [`Sketch`] is a DDSketch (Masson, Rim, Lee; VLDB 2019) with the logarithmic mapping: a value `v`
//! falls in bin `⌈log_γ v⌉`, `γ = (1 + α) / (1 − α)`, and a bin answers with `2γᵏ / (γ + 1)`, so every
//! quantile it returns is within a relative error of [`RELATIVE_ACCURACY`] (1 %) of the exact one at
//! the same rank. Durations are whole microseconds, 1 µs … 10 min, so at most ~1 000 bins exist and
//! no bin ever needs collapsing. Merging adds bin counts: exact and order-independent.
//!
//! Why not the `sketches-ddsketch` crate: it keeps the same bins but exposes neither them (histograms
//! need them) nor a stable encoding (its serde form is its private struct layout, which would become
//! our on-disk format). The part we need is the mapping and a bin array; the encoding below is ours
//! and versioned.
//!
//! [`DeviceSample`] keeps the `K` smallest 64-bit device hashes seen (a KMV sketch): merging is a
//! sorted union, and "at least `n` distinct devices" is answered exactly for any `n ≤ K`, which is
//! what k-anonymity folding needs.

/// The stated relative error of every quantile.
pub const RELATIVE_ACCURACY: f64 = 0.01;

/// How many device hashes a [`DeviceSample`] keeps: distinct-device counts are exact up to here.
pub const DEVICE_SAMPLE_SIZE: usize = 64;

const ENCODING_VERSION: u8 = 1;

fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

fn ln_gamma() -> f64 {
    gamma().ln()
}

/// The bin of a value (µs, ≥ 1).
pub fn key_of(v: u64) -> i32 {
    ((v.max(1) as f64).ln() / ln_gamma()).ceil() as i32
}

/// What a bin answers with: within `RELATIVE_ACCURACY` of any value in it.
fn value_of(key: i32) -> f64 {
    2.0 * gamma().powi(key) / (gamma() + 1.0)
}

/// Lower and upper bound of the values in a bin.
fn bounds_of(key: i32) -> (f64, f64) {
    (gamma().powi(key - 1), gamma().powi(key))
}

/// A DDSketch of durations in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sketch {
    /// Key of `counts[0]`.
    offset: i32,
    counts: Vec<u64>,
    count: u64,
    sum: u64,
    min: u64,
    max: u64,
}

impl Sketch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one duration in microseconds (values below 1 count as 1).
    pub fn add(&mut self, v: u64) {
        let v = v.max(1);
        self.add_at(key_of(v), v);
    }

    /// Adds `v` (≥ 1) whose bin [`key_of`] already computed.
    pub fn add_at(&mut self, key: i32, v: u64) {
        debug_assert_eq!(key, key_of(v));
        self.add_to_key(key, 1);
        if self.count == 0 || v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
        self.count += 1;
        self.sum = self.sum.saturating_add(v);
    }

    fn add_to_key(&mut self, key: i32, n: u64) {
        if self.counts.is_empty() {
            self.offset = key;
            self.counts.push(0);
        } else if key < self.offset {
            let grow = (self.offset - key) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = key;
        } else if key >= self.offset + self.counts.len() as i32 {
            self.counts.resize((key - self.offset + 1) as usize, 0);
        }
        self.counts[(key - self.offset) as usize] += n;
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Sketch) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        // Make room once, then add bin by bin.
        let lo = self.offset.min(other.offset);
        let hi =
            (self.offset + self.counts.len() as i32).max(other.offset + other.counts.len() as i32);
        if lo < self.offset {
            self.counts
                .splice(0..0, std::iter::repeat_n(0, (self.offset - lo) as usize));
            self.offset = lo;
        }
        self.counts.resize((hi - self.offset) as usize, 0);
        let start = (other.offset - self.offset) as usize;
        for (slot, n) in self.counts[start..].iter_mut().zip(&other.counts) {
            *slot += n;
        }
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.count += other.count;
        self.sum = self.sum.saturating_add(other.sum);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Exact mean in microseconds.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// Exact smallest and largest value.
    pub fn min(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min)
    }

    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    /// The value at rank `⌊q · (count − 1)⌋` of the sorted values (0-based), within
    /// [`RELATIVE_ACCURACY`]; `None` when empty or `q` is outside `[0, 1]`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = (q * (self.count - 1) as f64).floor() as u64;
        let mut seen = 0u64;
        for (i, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen > rank {
                let v = value_of(self.offset + i as i32);
                return Some(v.clamp(self.min as f64, self.max as f64));
            }
        }
        Some(self.max as f64)
    }

    /// Non-empty bins as (lower bound, upper bound, count), ascending, in microseconds.
    pub fn bins(&self) -> impl Iterator<Item = (f64, f64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| {
                let (lo, hi) = bounds_of(self.offset + i as i32);
                (lo, hi, *n)
            })
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        put_varint(out, self.count);
        if self.count == 0 {
            return;
        }
        put_varint(out, self.sum);
        put_varint(out, self.min);
        put_varint(out, self.max);
        put_varint(out, zigzag(self.offset));
        put_varint(out, self.counts.len() as u64);
        for n in &self.counts {
            put_varint(out, *n);
        }
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Sketch, DecodeError> {
        let count = r.varint()?;
        if count == 0 {
            return Ok(Sketch::default());
        }
        let sum = r.varint()?;
        let min = r.varint()?;
        let max = r.varint()?;
        let offset = unzigzag(r.varint()?)?;
        let len = r.varint()? as usize;
        if len > 4096 {
            return Err(DecodeError("too many bins"));
        }
        let mut counts = Vec::with_capacity(len);
        for _ in 0..len {
            counts.push(r.varint()?);
        }
        if counts.iter().sum::<u64>() != count {
            return Err(DecodeError("bin counts do not add up"));
        }
        Ok(Sketch {
            offset,
            counts,
            count,
            sum,
            min,
            max,
        })
    }
}

/// The `K` smallest distinct 64-bit device hashes seen, ascending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceSample {
    hashes: Vec<u64>,
}

impl DeviceSample {
    pub fn add(&mut self, hash: u64) {
        match self.hashes.binary_search(&hash) {
            Ok(_) => {}
            Err(at) if at < DEVICE_SAMPLE_SIZE => {
                self.hashes.insert(at, hash);
                self.hashes.truncate(DEVICE_SAMPLE_SIZE);
            }
            Err(_) => {}
        }
    }

    pub fn merge(&mut self, other: &DeviceSample) {
        if other.hashes.len() <= 4 {
            // Typical of one request's cell (one device): in place, no new allocation.
            other.hashes.iter().for_each(|h| self.add(*h));
            return;
        }
        let mut merged =
            Vec::with_capacity((self.hashes.len() + other.hashes.len()).min(DEVICE_SAMPLE_SIZE));
        let (mut a, mut b) = (
            self.hashes.iter().peekable(),
            other.hashes.iter().peekable(),
        );
        while merged.len() < DEVICE_SAMPLE_SIZE {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x < y => a.next(),
                (Some(x), Some(y)) if x > y => b.next(),
                (Some(_), Some(_)) => {
                    b.next();
                    a.next()
                }
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => None,
            };
            match next {
                Some(h) => merged.push(*h),
                None => break,
            }
        }
        self.hashes = merged;
    }

    /// Distinct devices: exact below [`DEVICE_SAMPLE_SIZE`], the KMV estimate `(K − 1) / h_K` above.
    pub fn distinct(&self) -> u64 {
        if self.hashes.len() < DEVICE_SAMPLE_SIZE {
            return self.hashes.len() as u64;
        }
        let kth = *self.hashes.last().expect("full sample") as f64 / u64::MAX as f64;
        (((DEVICE_SAMPLE_SIZE - 1) as f64) / kth.max(f64::MIN_POSITIVE)).round() as u64
    }

    /// True when at least `n` distinct devices were seen (exact for `n ≤ DEVICE_SAMPLE_SIZE`).
    pub fn at_least(&self, n: u64) -> bool {
        self.distinct() >= n
    }
}

/// What one sketch row holds: durations and devices of one group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cell {
    pub sketch: Sketch,
    pub devices: DeviceSample,
}

impl Cell {
    pub fn add(&mut self, dur_us: u64, device: u64) {
        self.sketch.add(dur_us);
        self.devices.add(device);
    }

    pub fn merge(&mut self, other: &Cell) {
        self.sketch.merge(&other.sketch);
        self.devices.merge(&other.devices);
    }

    /// The stored form: a version byte, the sketch (varints), the device hashes (delta varints).
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(32 + self.sketch.counts.len() * 2 + self.devices.hashes.len() * 9);
        out.push(ENCODING_VERSION);
        self.sketch.encode_into(&mut out);
        put_varint(&mut out, self.devices.hashes.len() as u64);
        let mut prev = 0u64;
        for h in &self.devices.hashes {
            put_varint(&mut out, h - prev);
            prev = *h;
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Cell, DecodeError> {
        let mut r = Reader(bytes);
        if r.byte()? != ENCODING_VERSION {
            return Err(DecodeError("unknown sketch encoding version"));
        }
        let sketch = Sketch::decode_from(&mut r)?;
        let n = r.varint()? as usize;
        if n > DEVICE_SAMPLE_SIZE {
            return Err(DecodeError("too many device hashes"));
        }
        let mut hashes = Vec::with_capacity(n);
        let mut prev = 0u64;
        for i in 0..n {
            let delta = r.varint()?;
            if i > 0 && delta == 0 {
                return Err(DecodeError("device hashes not ascending"));
            }
            prev = prev
                .checked_add(delta)
                .ok_or(DecodeError("device hash overflow"))?;
            hashes.push(prev);
        }
        if !r.0.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(Cell {
            sketch,
            devices: DeviceSample { hashes },
        })
    }
}

/// A stored sketch that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sketch: {0}")]
pub struct DecodeError(&'static str);

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i32) -> u64 {
    ((v << 1) ^ (v >> 31)) as u32 as u64
}

fn unzigzag(v: u64) -> Result<i32, DecodeError> {
    let v = u32::try_from(v).map_err(|_| DecodeError("offset out of range"))?;
    Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.0.split_first().ok_or(DecodeError("truncated"))?;
        self.0 = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint too long"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    fn exact(sorted: &[u64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize] as f64
    }

    #[test]
    fn quantiles_are_within_the_stated_error() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for dist in 0..3 {
            let mut values: Vec<u64> = (0..20_000)
                .map(|_| match dist {
                    0 => rng.random_range(1..=600_000_000),
                    1 => (rng.random::<f64>().powi(4) * 5e6) as u64 + 1,
                    _ => 250_000 + rng.random_range(0..1000),
                })
                .collect();
            // Built in two halves and merged, to exercise merge as the store does.
            let (a, b) = values.split_at(7_000);
            let mut s = Sketch::new();
            a.iter().for_each(|v| s.add(*v));
            let mut t = Sketch::new();
            b.iter().for_each(|v| t.add(*v));
            s.merge(&t);
            values.sort_unstable();
            assert_eq!(s.count(), values.len() as u64);
            for q in [0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0] {
                let want = exact(&values, q);
                let got = s.quantile(q).unwrap();
                let err = (got - want).abs() / want;
                assert!(
                    err <= RELATIVE_ACCURACY + 1e-12,
                    "dist {dist} q {q}: {got} vs {want}"
                );
            }
            assert_eq!(s.min(), values.first().copied());
            assert_eq!(s.max(), values.last().copied());
        }
    }

    #[test]
    fn merge_is_order_independent_and_encoding_round_trips() {
        let mut cells: Vec<Cell> = Vec::new();
        for i in 0..5u64 {
            let mut c = Cell::default();
            for j in 0..(100 * (i + 1)) {
                c.add(
                    1 + (j * 7919 + i * 104_729) % 3_000_000,
                    j.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i,
                );
            }
            cells.push(c);
        }
        let mut forward = Cell::default();
        cells.iter().for_each(|c| forward.merge(c));
        let mut backward = Cell::default();
        cells.iter().rev().for_each(|c| backward.merge(c));
        assert_eq!(forward, backward);
        assert_eq!(Cell::decode(&forward.encode()).unwrap(), forward);
        assert_eq!(
            Cell::decode(&Cell::default().encode()).unwrap(),
            Cell::default()
        );
        assert!(Cell::decode(&[2]).is_err());
        let mut bytes = forward.encode();
        bytes.truncate(bytes.len() - 1);
        assert!(Cell::decode(&bytes).is_err());
    }

    #[test]
    fn device_counts_are_exact_below_the_sample_size() {
        let mut s = DeviceSample::default();
        for i in 0..4u64 {
            s.add(i * 1000);
            s.add(i * 1000); // repeats do not count
        }
        assert_eq!(s.distinct(), 4);
        assert!(!s.at_least(5));
        let mut t = DeviceSample::default();
        t.add(3000);
        t.add(99);
        s.merge(&t);
        assert_eq!(s.distinct(), 5);
        assert!(s.at_least(5));
        // Far beyond the sample, the estimate is in the right range.
        let mut big = DeviceSample::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..10_000 {
            big.add(rng.random());
        }
        let d = big.distinct() as f64;
        assert!((5_000.0..20_000.0).contains(&d), "{d}");
    }

    #[test]
    fn bins_cover_every_value_once() {
        let mut s = Sketch::new();
        for v in [1, 2, 1000, 1001, 412_000, 600_000_000] {
            s.add(v);
        }
        let bins: Vec<_> = s.bins().collect();
        assert_eq!(bins.iter().map(|b| b.2).sum::<u64>(), 6);
        for v in [1u64, 2, 1000, 412_000, 600_000_000] {
            assert!(
                bins.iter().any(
                    |(lo, hi, _)| (v as f64) > *lo * 0.999_999 && (v as f64) <= *hi * 1.000_001
                )
            );
        }
    }
}
