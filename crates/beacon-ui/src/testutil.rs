//! Checks on rendered markup shared by the unit tests.

const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
    "wbr",
];

/// The attributes of every start tag in `html`, as `(tag, name, value)`.
pub(crate) fn attributes(html: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for tag in html.split('<').skip(1) {
        let Some(end) = tag.find('>') else { continue };
        let inner = &tag[..end];
        if inner.starts_with('/') || inner.starts_with('!') {
            continue;
        }
        let name = inner.split([' ', '/']).next().unwrap_or("").to_string();
        let mut rest = &inner[name.len()..];
        while let Some(eq) = rest.find("=\"") {
            let attr = rest[..eq]
                .trim()
                .rsplit(' ')
                .next()
                .unwrap_or("")
                .to_string();
            let after = &rest[eq + 2..];
            let Some(close) = after.find('"') else { break };
            out.push((name.clone(), attr, after[..close].to_string()));
            rest = &after[close + 1..];
        }
    }
    out
}

/// Every non-void element is closed, in order (in inline SVG a start tag without its end tag would
/// swallow the elements after it).
pub(crate) fn assert_balanced(html: &str) {
    let mut open: Vec<String> = Vec::new();
    for tag in html.split('<').skip(1) {
        let end = tag
            .find('>')
            .unwrap_or_else(|| panic!("unterminated tag in {html}"));
        let inner = &tag[..end];
        if inner.starts_with('!') {
            continue;
        }
        if let Some(name) = inner.strip_prefix('/') {
            let top = open
                .pop()
                .unwrap_or_else(|| panic!("</{name}> closes nothing in {html}"));
            assert_eq!(top, name, "</{name}> closes <{top}> in {html}");
            continue;
        }
        let name = inner.split([' ', '/']).next().unwrap_or("");
        if !VOID.contains(&name) && !inner.ends_with('/') {
            open.push(name.to_string());
        }
    }
    assert!(open.is_empty(), "unclosed {open:?} in {html}");
}

/// Every coordinate attribute is a list of numbers with at most one decimal.
pub(crate) fn assert_coordinates(html: &str) {
    const COORDS: &[&str] = &[
        "x", "y", "x1", "x2", "y1", "y2", "cx", "cy", "r", "width", "height", "points", "viewBox",
    ];
    let mut seen = 0;
    for (tag, name, value) in attributes(html) {
        if !COORDS.contains(&name.as_str()) {
            continue;
        }
        for token in value.split([' ', ',']).filter(|t| !t.is_empty()) {
            seen += 1;
            assert!(
                token.parse::<f64>().is_ok_and(f64::is_finite),
                "<{tag} {name}=\"{value}\">"
            );
            let decimals = token.split_once('.').map_or(0, |(_, f)| f.len());
            assert!(
                decimals <= 1,
                "<{tag} {name}=\"{value}\"> has {decimals} decimals"
            );
        }
    }
    assert!(seen > 0 || !html.contains("<svg"), "no coordinates found");
}
