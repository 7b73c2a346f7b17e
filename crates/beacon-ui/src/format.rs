//! How numbers are shown to people: digits grouped by thousands with `,`, at most two decimals, a
//! missing or non-finite value as `—`. CSV never uses these (see [`crate::table::Cell`]).

/// What a missing value shows as.
pub const MISSING: &str = "—";

/// An integer with grouped thousands: `1234567` → `1,234,567`.
pub fn int(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    group_into(&digits, &mut out);
    out
}

/// A number rounded to at most two decimals, trailing zeros dropped, thousands grouped:
/// `1234.5` → `1,234.5`, `0.126` → `0.13`, `3.0` → `3`; NaN and infinities → `—`.
pub fn number(v: f64) -> String {
    fixed(v, 2)
}

/// A ratio (0..=1) as a percentage with one decimal: `0.975` → `97.5%`, `1.0` → `100%`.
pub fn percent(ratio: f64) -> String {
    if !ratio.is_finite() {
        return MISSING.to_string();
    }
    format!("{}%", fixed(ratio * 100.0, 1))
}

/// A number with a unit: `12 ms`, `97.5%` (no space before `%`), or the number alone for `""`.
pub fn with_unit(v: f64, unit: &str) -> String {
    let n = number(v);
    if unit.is_empty() || !v.is_finite() {
        n
    } else if unit == "%" {
        format!("{n}%")
    } else {
        format!("{n} {unit}")
    }
}

/// A short axis label: `950`, `0.075`, `1.2k`, `15k`, `3.4M`, `2B` (below 1,000 up to four
/// decimals, which also hides floating-point noise such as `0.30000000000000004`).
pub fn compact(v: f64) -> String {
    if !v.is_finite() {
        return MISSING.to_string();
    }
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e9 {
        (v / 1e9, "B")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        return fixed(v, 4);
    };
    format!("{}{suffix}", fixed(scaled, 1))
}

/// `v` rounded to `decimals` places, trailing zeros dropped, integer digits grouped.
fn fixed(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return MISSING.to_string();
    }
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    let (sign, unsigned) = match s.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", s),
    };
    let (int_part, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    // `-0.001` rounds to `-0`: show `0`.
    let sign = if int_part.bytes().all(|b| b == b'0') && frac.is_none() {
        ""
    } else {
        sign
    };
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    out.push_str(sign);
    group_into(int_part, &mut out);
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

fn group_into(digits: &str, out: &mut String) {
    let len = digits.len();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (len - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
}

/// An SVG coordinate: rounded to one decimal, `.0` dropped (`12.34` → `12.3`, `7.0` → `7`).
pub(crate) fn coord(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r == 0.0 || !r.is_finite() {
        "0".to_string()
    } else {
        format!("{r}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_group_thousands() {
        assert_eq!(int(0), "0");
        assert_eq!(int(999), "999");
        assert_eq!(int(1000), "1,000");
        assert_eq!(int(1234567), "1,234,567");
        assert_eq!(int(-1234), "-1,234");
        assert_eq!(int(i64::MIN), "-9,223,372,036,854,775,808");
    }

    #[test]
    fn numbers_keep_at_most_two_decimals() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(1234.5), "1,234.5");
        assert_eq!(number(0.126), "0.13");
        assert_eq!(number(-0.001), "0");
        assert_eq!(number(-2500.25), "-2,500.25");
        assert_eq!(number(f64::NAN), "—");
        assert_eq!(number(f64::INFINITY), "—");
    }

    #[test]
    fn percents_and_units() {
        assert_eq!(percent(0.975), "97.5%");
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(0.0), "0%");
        assert_eq!(with_unit(12.0, "ms"), "12 ms");
        assert_eq!(with_unit(40.0, "%"), "40%");
        assert_eq!(with_unit(1500.0, ""), "1,500");
    }

    #[test]
    fn compact_axis_labels() {
        assert_eq!(compact(950.0), "950");
        assert_eq!(compact(1200.0), "1.2k");
        assert_eq!(compact(15000.0), "15k");
        assert_eq!(compact(3_400_000.0), "3.4M");
        assert_eq!(compact(2e9), "2B");
        assert_eq!(compact(0.25), "0.25");
        assert_eq!(compact(0.075), "0.075");
        assert_eq!(compact(0.1 + 0.2), "0.3");
    }

    #[test]
    fn coordinates_have_at_most_one_decimal() {
        assert_eq!(coord(12.34), "12.3");
        assert_eq!(coord(7.0), "7");
        assert_eq!(coord(-0.04), "0");
        assert_eq!(coord(99.96), "100");
        for i in 0..2000 {
            let s = coord(i as f64 * 0.337);
            let decimals = s.split_once('.').map_or(0, |(_, f)| f.len());
            assert!(decimals <= 1, "{s}");
        }
    }
}
