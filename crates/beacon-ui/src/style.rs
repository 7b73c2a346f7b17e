//! The dashboard's one stylesheet and its content hash.

/// The stylesheet: system fonts, zebra tables with right-aligned numbers, overview tiles, visible
/// focus outlines, chart colours as custom properties, light and dark (`prefers-color-scheme`).
pub const STYLE_CSS: &str = include_str!("style.css");

/// A short hex hash of [`STYLE_CSS`] (12 digits, 48 bits of FNV-1a 64): serve the stylesheet at a
/// name that holds it (`/ui/static/style.<hash>.css`) with an immutable cache lifetime, since a
/// changed stylesheet gets a new name.
pub fn style_hash() -> String {
    format!("{:012x}", fnv1a64(STYLE_CSS.as_bytes()) >> 16)
}

/// FNV-1a, 64 bits: a content fingerprint for cache busting, not a defence against anyone.
pub(crate) const fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn the_hash_is_twelve_lowercase_hex_digits_of_the_content() {
        let h = style_hash();
        assert_eq!(h.len(), 12);
        assert!(
            h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{h}"
        );
        assert_eq!(h, format!("{:012x}", fnv1a64(STYLE_CSS.as_bytes()) >> 16));
        let mut changed = STYLE_CSS.to_string();
        changed.push(' ');
        assert_ne!(fnv1a64(changed.as_bytes()), fnv1a64(STYLE_CSS.as_bytes()));
    }

    #[test]
    fn the_stylesheet_stays_small_and_balanced() {
        assert!(STYLE_CSS.len() < 12 * 1024, "{} bytes", STYLE_CSS.len());
        assert_eq!(
            STYLE_CSS.matches('{').count(),
            STYLE_CSS.matches('}').count()
        );
        assert!(STYLE_CSS.contains("@media (prefers-color-scheme: dark)"));
        assert!(STYLE_CSS.contains(":focus-visible"));
        assert!(!STYLE_CSS.contains("url("), "no external resources");
        assert!(!STYLE_CSS.contains("@import"), "no external resources");
    }

    /// `--name: #rrggbb;` declarations of one block.
    fn colours(block: &str) -> HashMap<&str, [u8; 3]> {
        let mut out = HashMap::new();
        for decl in block.split(';') {
            // A chunk may start with a selector or an at-rule: keep what follows the last `{`.
            let decl = decl.rsplit('{').next().unwrap_or(decl);
            let Some((name, value)) = decl.trim().split_once(':') else {
                continue;
            };
            let (Some(name), Some(hex)) = (
                name.trim().strip_prefix("--"),
                value.trim().strip_prefix('#'),
            ) else {
                continue;
            };
            if hex.len() == 6 {
                let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex colour");
                out.insert(name, [byte(0), byte(2), byte(4)]);
            }
        }
        out
    }

    fn luminance([r, g, b]: [u8; 3]) -> f64 {
        let channel = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.03928 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)
    }

    fn contrast(a: [u8; 3], b: [u8; 3]) -> f64 {
        let (la, lb) = (luminance(a), luminance(b));
        (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
    }

    #[test]
    fn contrast_calculation_matches_known_ratios() {
        assert!((contrast([0, 0, 0], [255, 255, 255]) - 21.0).abs() < 1e-9);
        assert!((contrast([0x76, 0x76, 0x76], [255, 255, 255]) - 4.54).abs() < 0.01);
    }

    /// WCAG AA: text 4.5:1 on every background it is drawn on; chart colours, control borders,
    /// focus outlines and axes 3:1 (non-text contrast), in light and in dark mode.
    #[test]
    fn light_and_dark_colours_meet_wcag_aa() {
        let dark_at = STYLE_CSS
            .find("@media (prefers-color-scheme: dark)")
            .expect("dark block");
        let light = colours(&STYLE_CSS[..dark_at]);
        let dark_end = dark_at
            + STYLE_CSS[dark_at..]
                .find("\n}\n")
                .expect("end of dark block");
        let dark = colours(&STYLE_CSS[dark_at..dark_end]);
        let backgrounds = ["bg", "surface", "zebra"];
        let mut checks: Vec<(&str, &str, f64)> = Vec::new();
        for bg in backgrounds {
            for text in ["text", "muted", "link"] {
                checks.push((text, bg, 4.5));
            }
            for graphic in [
                "c0",
                "c1",
                "c2",
                "c3",
                "c4",
                "c5",
                "focus",
                "field-border",
                "axis",
            ] {
                checks.push((graphic, bg, 3.0));
            }
        }
        checks.extend([
            ("on-accent", "accent", 4.5),
            ("on-accent", "danger", 4.5),
            ("link", "bg", 4.5),
            ("error-text", "error-bg", 4.5),
            ("ok-text", "ok-bg", 4.5),
        ]);
        for (mode, palette) in [("light", &light), ("dark", &dark)] {
            for (fg, bg, min) in &checks {
                let (Some(&f), Some(&b)) = (palette.get(fg), palette.get(bg)) else {
                    panic!("{mode}: --{fg} or --{bg} missing");
                };
                let ratio = contrast(f, b);
                assert!(
                    ratio >= *min,
                    "{mode}: --{fg} on --{bg} is {ratio:.2}:1, needs {min}:1"
                );
            }
        }
        assert_eq!(light.len(), dark.len(), "dark mode redefines every colour");
    }
}
