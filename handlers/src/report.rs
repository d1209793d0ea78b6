//! The HTML report of one deploy: one self-contained file (inline CSS and SVG, no script, nothing
//! fetched), for people who would rather look than read. It shows the outcome and the verdict of
//! verification, the phases on a time axis, a chart per service of its healthy, launching and
//! terminating instances against its desired capacity, for a traffic-shifted service a chart of
//! the share of traffic on the new release, and the whole timeline.

use crate::replay::{duration, header};
use skald_engine::replay::{self, Failure, Verified};
use skald_engine::workflow::{evolve, Event, Recorded, State, Timestamp};
use std::collections::BTreeMap;
use std::fmt::Write;

const CHART_WIDTH: f64 = 900.0;
const CHART_HEIGHT: f64 = 160.0;
const MARGIN_LEFT: f64 = 40.0;
/// Room a phase's label needs on the time axis, per character.
const PHASE_LABEL_PX_PER_CHAR: f64 = 6.5;

/// One service's counts over time: (elapsed ms, value) points of a step function.
#[derive(Default)]
struct Series {
    healthy: Vec<(u64, u32)>,
    launching: Vec<(u64, u32)>,
    terminating: Vec<(u64, u32)>,
    desired: Vec<(u64, u32)>,
    /// Percent of traffic on the new release, at each shift.
    weight: Vec<(u64, u32)>,
}

impl Series {
    fn peak(&self) -> u32 {
        [&self.healthy, &self.launching, &self.terminating, &self.desired].iter().flat_map(|s| s.iter().map(|p| p.1)).max().unwrap_or(0)
    }
}

/// The report for a history that reads (see `replay::read`); `verdict` is `replay::verify`'s.
pub fn html(recorded: &[Recorded], verdict: &Result<Verified, Failure>) -> String {
    let start = recorded.first().map(|r| r.at).unwrap_or_default();
    let total_ms = recorded.last().map_or(0, |r| r.at.ms_since(start)).max(1);
    let (state, series) = fold_series(recorded, start);
    let title = state.request.as_ref().map_or("skald deploy".to_string(), |r| format!("skald deploy {}", r.release_id));
    let mut page = String::new();
    let end = state.end.as_ref().map_or("running", |e| e.name());
    let _ = write!(
        page,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>",
        escape(&title)
    );
    let _ = write!(page, "<h1>{} <span class=\"end {}\">{}</span></h1>", escape(&title), end_class(end), end);
    page.push_str("<pre class=\"summary\">");
    for line in header(&state, recorded) {
        page.push_str(&escape(&line));
        page.push('\n');
    }
    page.push_str(&escape(&verdict_line(verdict)));
    page.push_str("</pre>");
    page.push_str("<h2>Phases</h2>");
    page.push_str(&phases_section(recorded, start, total_ms));
    for (service, s) in &series {
        let _ = write!(page, "<h2>Service {}</h2>", escape(service));
        page.push_str(&service_svg(s, total_ms));
        if !s.weight.is_empty() {
            page.push_str("<h3>Traffic on the new release (%)</h3>");
            page.push_str(&weight_svg(s, total_ms));
        }
    }
    page.push_str("<p class=\"legend\"><span class=\"healthy\">healthy</span> <span class=\"launching\">launching</span> ");
    page.push_str("<span class=\"terminating\">terminating</span> <span class=\"desired\">desired capacity</span></p>");
    page.push_str("<h2>Timeline</h2><table><tr><th>seq</th><th>time</th><th>elapsed</th><th>event</th><th>summary</th></tr>");
    for r in recorded {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>+{}</td><td>{}</td><td>{}</td></tr>",
            r.seq,
            r.at,
            duration(r.at.ms_since(start)),
            r.event.name(),
            escape(&r.event.to_string())
        );
    }
    page.push_str("</table></body></html>\n");
    page
}

fn verdict_line(verdict: &Result<Verified, Failure>) -> String {
    match verdict {
        Ok(v) => format!("verified: {} events, hash chain intact, states and decisions match today's code", v.events),
        Err(failure) => format!("VERIFICATION FAILED ({} check): {failure}", failure.check()),
    }
}

fn end_class(end: &str) -> &'static str {
    match end {
        "Success" => "ok",
        "FailureClean" => "failed",
        "FailureDirty" => "dirty",
        _ => "running",
    }
}

/// Folds the history, sampling each service's counts whenever they change.
fn fold_series(recorded: &[Recorded], start: Timestamp) -> (State, BTreeMap<String, Series>) {
    let mut state = State::default();
    let mut series: BTreeMap<String, Series> = BTreeMap::new();
    for r in recorded {
        state = evolve(state, r);
        let t = r.at.ms_since(start);
        match &r.event {
            Event::HealthObserved { services } => {
                for (name, counts) in services {
                    let s = series.entry(name.clone()).or_default();
                    s.healthy.push((t, counts.healthy));
                    s.launching.push((t, counts.launching));
                    s.terminating.push((t, counts.terminating));
                }
            }
            Event::ServiceLaunched { service, desired, .. } | Event::CapacitySet { service, desired, .. } => {
                series.entry(service.clone()).or_default().desired.push((t, *desired));
            }
            Event::TrafficShifted { service, weight } => {
                let s = series.entry(service.clone()).or_default();
                if s.weight.is_empty() {
                    // The share is 0 until the first shift: the chart starts from the beginning.
                    s.weight.push((0, 0));
                }
                s.weight.push((t, *weight));
            }
            _ => {}
        }
    }
    (state, series)
}

fn x(t: u64, total_ms: u64) -> f64 {
    MARGIN_LEFT + (CHART_WIDTH - MARGIN_LEFT - 10.0) * t as f64 / total_ms as f64
}

fn phases_section(recorded: &[Recorded], start: Timestamp, total_ms: u64) -> String {
    let phases = replay::phases(recorded);
    let mut svg = format!("<svg viewBox=\"0 0 {CHART_WIDTH} 50\" width=\"{CHART_WIDTH}\" height=\"50\" role=\"img\">");
    for (i, phase) in phases.iter().enumerate() {
        let (from, until) = (x(phase.from.ms_since(start), total_ms), x(phase.until.ms_since(start), total_ms));
        let width = (until - from).max(2.0);
        let _ = write!(
            svg,
            "<rect class=\"phase p{}\" x=\"{from:.1}\" y=\"5\" width=\"{width:.1}\" height=\"20\"><title>{} from #{} for {}</title></rect>",
            i % 4,
            phase.name,
            phase.from_seq,
            duration(phase.elapsed_ms())
        );
        // Phases of no length (a validation, a lock) would print their names over each other: they
        // keep their tooltip and their row in the table below.
        if width >= PHASE_LABEL_PX_PER_CHAR * phase.name.len() as f64 {
            let _ = write!(svg, "<text x=\"{from:.1}\" y=\"40\" class=\"label\">{}</text>", phase.name);
        }
    }
    svg.push_str("</svg><table><tr><th>phase</th><th>from</th><th>for</th></tr>");
    for phase in &phases {
        let _ = write!(svg, "<tr><td>{}</td><td>#{}</td><td>{}</td></tr>", phase.name, phase.from_seq, duration(phase.elapsed_ms()));
    }
    svg.push_str("</table>");
    svg
}

fn service_svg(series: &Series, total_ms: u64) -> String {
    let peak = series.peak().max(1);
    let y = |v: u32| 10.0 + (CHART_HEIGHT - 30.0) * (1.0 - f64::from(v) / f64::from(peak));
    let mut svg =
        format!("<svg viewBox=\"0 0 {CHART_WIDTH} {CHART_HEIGHT}\" width=\"{CHART_WIDTH}\" height=\"{CHART_HEIGHT}\" role=\"img\">");
    for tick in [0, peak / 2, peak] {
        let _ = write!(svg, "<text x=\"4\" y=\"{:.1}\" class=\"label\">{tick}</text>", y(tick) + 4.0);
        let _ = write!(svg, "<line class=\"grid\" x1=\"{MARGIN_LEFT}\" x2=\"{CHART_WIDTH}\" y1=\"{0:.1}\" y2=\"{0:.1}\"/>", y(tick));
    }
    let _ =
        write!(svg, "<text x=\"{:.1}\" y=\"{:.1}\" class=\"label\">+{}</text>", CHART_WIDTH - 60.0, CHART_HEIGHT - 4.0, duration(total_ms));
    for (class, points) in
        [("desired", &series.desired), ("terminating", &series.terminating), ("launching", &series.launching), ("healthy", &series.healthy)]
    {
        if !points.is_empty() {
            let _ = write!(svg, "<path class=\"{class}\" d=\"{}\"/>", step_path(points, total_ms, y));
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The share of the service's traffic on the new release, 0 to 100 %, over the deploy.
fn weight_svg(series: &Series, total_ms: u64) -> String {
    let height = CHART_HEIGHT / 2.0;
    let y = |v: u32| 10.0 + (height - 20.0) * (1.0 - f64::from(v) / 100.0);
    let mut svg = format!("<svg viewBox=\"0 0 {CHART_WIDTH} {height}\" width=\"{CHART_WIDTH}\" height=\"{height}\" role=\"img\">");
    for tick in [0, 50, 100] {
        let _ = write!(svg, "<text x=\"4\" y=\"{:.1}\" class=\"label\">{tick}</text>", y(tick) + 4.0);
        let _ = write!(svg, "<line class=\"grid\" x1=\"{MARGIN_LEFT}\" x2=\"{CHART_WIDTH}\" y1=\"{0:.1}\" y2=\"{0:.1}\"/>", y(tick));
    }
    let _ = write!(svg, "<path class=\"weight\" d=\"{}\"/></svg>", step_path(&series.weight, total_ms, y));
    svg
}

/// An SVG path drawing `points` as a step function, held to the end of the chart.
fn step_path(points: &[(u64, u32)], total_ms: u64, y: impl Fn(u32) -> f64) -> String {
    let mut path = String::new();
    let mut last_y = None;
    for &(t, v) in points {
        let (px, py) = (x(t, total_ms), y(v));
        match last_y {
            None => path.push_str(&format!("M{px:.1},{py:.1}")),
            Some(ly) => path.push_str(&format!(" L{px:.1},{ly:.1} L{px:.1},{py:.1}")),
        }
        last_y = Some(py);
    }
    path.push_str(&format!(" L{:.1},{:.1}", x(total_ms, total_ms), last_y.unwrap_or_default()));
    path
}

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

const STYLE: &str =
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}h1 .end{font-size:.6em;padding:.2em .5em;border-radius:.3em}\
.ok{background:#d4f4dd}.failed{background:#fde2c8}.dirty{background:#f8c8c8}.running{background:#e0e0e0}\
pre.summary{background:#f6f6f6;padding:1em}svg{display:block;margin:.5em 0}.label{font-size:11px;fill:#555}\
.grid{stroke:#eee}path{fill:none;stroke-width:2}path.healthy{stroke:#2a9d4b}path.launching{stroke:#e9a400}\
path.terminating{stroke:#d1342f}path.weight{stroke:#6a51a3}path.desired{stroke:#888;stroke-dasharray:4 3}.phase.p0{fill:#9ecae1}.phase.p1{fill:#c6dbef}\
.phase.p2{fill:#a1d99b}.phase.p3{fill:#fdd0a2}.legend span{margin-right:1em;font-weight:bold}.legend .healthy{color:#2a9d4b}\
.legend .launching{color:#e9a400}.legend .terminating{color:#d1342f}.legend .desired{color:#888}\
table{border-collapse:collapse;font-size:13px}td,th{border-bottom:1px solid #eee;padding:.2em .6em;text-align:left;vertical-align:top}";

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn text_from_the_history_cannot_become_markup() {
        assert_eq!(escape("<script>alert('x')</script> & \"y\""), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;");
    }
}
