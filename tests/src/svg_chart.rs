//! A small hand-written SVG chart: panels of labelled horizontal bars, one scale per
//! panel, for the end-to-end benchmark's figure in `docs/`.

use std::fmt::Write as _;

/// One panel: a title and one bar per label.
pub struct Panel {
    pub title: String,
    pub bars: Vec<(String, f64)>,
}

const WIDTH: f64 = 880.0;
const LABEL_WIDTH: f64 = 330.0;
const VALUE_WIDTH: f64 = 110.0;
const BAR_HEIGHT: f64 = 22.0;
const GAP: f64 = 8.0;
const PANEL_TITLE: f64 = 28.0;

/// The SVG document of `panels` under `title`; each bar is printed with its value.
pub fn bar_panels(title: &str, panels: &[Panel]) -> String {
    let mut body = String::new();
    let mut y = 36.0;
    let span = WIDTH - LABEL_WIDTH - VALUE_WIDTH;
    for panel in panels {
        let _ = writeln!(
            body,
            r#"<text x="10" y="{}" font-weight="bold">{}</text>"#,
            y + 18.0,
            escape(&panel.title)
        );
        y += PANEL_TITLE;
        let largest = panel
            .bars
            .iter()
            .map(|(_, value)| *value)
            .fold(0.0, f64::max)
            .max(f64::MIN_POSITIVE);
        for (label, value) in &panel.bars {
            let length = (span * value / largest).max(1.0);
            let _ = writeln!(
                body,
                r##"<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{LABEL_WIDTH}" y="{y}" width="{length:.1}" height="{BAR_HEIGHT}" fill="#4a7ab5"/><text x="{}" y="{}">{}</text>"##,
                LABEL_WIDTH - 8.0,
                y + 16.0,
                escape(label),
                LABEL_WIDTH + length + 6.0,
                y + 16.0,
                format_value(*value)
            );
            y += BAR_HEIGHT + GAP;
        }
        y += GAP * 2.0;
    }
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y}" font-family="sans-serif" font-size="13">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="22" font-size="15" font-weight="bold">{}</text>
{body}</svg>
"#,
        escape(title)
    )
}

/// Large values with thousands separators, small ones with three significant digits.
fn format_value(value: f64) -> String {
    if value >= 1000.0 {
        let whole = value.round() as u64;
        let digits = whole.to_string();
        let mut out = String::new();
        for (index, digit) in digits.chars().enumerate() {
            if index > 0 && (digits.len() - index).is_multiple_of(3) {
                out.push(',');
            }
            out.push(digit);
        }
        out
    } else {
        format!("{value:.3}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_show_their_values() {
        let svg = bar_panels(
            "t <1>",
            &[Panel {
                title: "rate".into(),
                bars: vec![("a".into(), 120_000.0), ("b".into(), 0.5)],
            }],
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("t &lt;1&gt;"));
        assert!(
            svg.contains(r#"width="440.0""#),
            "the largest bar spans the panel"
        );
        assert!(svg.contains(">120,000<") && svg.contains(">0.500<"));
    }
}
