//! Charts of side-by-side results (`keyfort-bench plot`): throughput against concurrency for
//! each workload, one line per server (median of the repeats, bars from the lowest to the
//! highest run), and the latency distribution at one concurrency as a percentile curve.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Deserialize;

use crate::latency::PercentilePoint;

/// The fields of a run that the charts use; results of either server have them.
#[derive(Clone, Debug, Deserialize)]
pub struct PlotRun {
    pub server: String,
    pub workload: String,
    pub concurrency: usize,
    #[serde(default)]
    pub throughput_rps: f64,
    #[serde(default)]
    pub latency_ms: Option<LooseLatency>,
    #[serde(default)]
    pub percentiles: Vec<PercentilePoint>,
    /// A run that did not complete (side-by-side results keep them, with the reason).
    #[serde(default)]
    pub failed: bool,
    /// Why a completed run does not count (its requests ran out, say).
    #[serde(default)]
    pub invalid: Option<String>,
}

/// Latency figures where some may be missing (a peer's driver may report no p99.9).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct LooseLatency {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
}

#[derive(Deserialize)]
struct RunsFile {
    runs: Vec<PlotRun>,
}

pub fn load(path: &Path) -> anyhow::Result<Vec<PlotRun>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: RunsFile =
        serde_json::from_str(&text).with_context(|| format!("{}: expected {{\"runs\": [...]}}", path.display()))?;
    Ok(file.runs.into_iter().filter(|r| !r.failed && r.invalid.is_none()).collect())
}

pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Per server, per concurrency: (median, min, max) throughput of `workload`'s runs.
pub type Series = BTreeMap<String, Vec<(usize, f64, f64, f64)>>;

pub fn throughput_series(runs: &[PlotRun], workload: &str) -> Series {
    let mut grouped: BTreeMap<String, BTreeMap<usize, Vec<f64>>> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.workload == workload) {
        grouped.entry(r.server.clone()).or_default().entry(r.concurrency).or_default().push(r.throughput_rps);
    }
    grouped
        .into_iter()
        .map(|(server, by_c)| {
            let points = by_c
                .into_iter()
                .map(|(c, mut v)| {
                    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    (c, median(&mut v), lo, hi)
                })
                .collect();
            (server, points)
        })
        .collect()
}

/// Position on the "nines" axis: p50 → 0.3, p90 → 1, p99 → 2, p99.9 → 3.
pub fn nines(percentile: f64) -> f64 {
    -(1.0 - (percentile / 100.0).min(0.99999)).log10()
}

/// The percentile at a position of the nines axis, as a label.
pub fn nines_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let text = format!("{p:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("p{text}")
}

/// The points of one run's latency curve on the nines axis: the full curve when the run
/// has one, else its p50/p90/p99/p99.9. The maximum (p100) has no place on this axis.
pub fn latency_points(run: &PlotRun) -> Vec<(f64, f64)> {
    if !run.percentiles.is_empty() {
        return run
            .percentiles
            .iter()
            .filter(|p| p.percentile < 100.0 && p.ms > 0.0)
            .map(|p| (nines(p.percentile), p.ms))
            .collect();
    }
    let l = run.latency_ms.clone().unwrap_or_default();
    [(50.0, l.p50), (90.0, l.p90), (99.0, l.p99), (99.9, l.p999)]
        .into_iter()
        .filter_map(|(p, v)| v.filter(|v| *v > 0.0).map(|v| (nines(p), v)))
        .collect()
}

/// The run with the median throughput among `runs` (the middle one of the repeats).
fn median_run<'a>(runs: &[&'a PlotRun]) -> Option<&'a PlotRun> {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.throughput_rps.total_cmp(&b.throughput_rps));
    sorted.get(sorted.len() / 2).copied()
}

/// Keyfort blue, the others in turn, the same in every chart.
fn colour(server: &str, servers: &[&str]) -> RGBColor {
    if server == "keyfort" {
        return RGBColor(31, 119, 180);
    }
    let others = servers.iter().filter(|s| **s != "keyfort");
    let index = others.clone().position(|s| *s == server).unwrap_or(0);
    [RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(214, 39, 40), RGBColor(148, 103, 189)][index % 4]
}

/// Registers a TrueType font for the chart text: `font`, or the first of the usual system
/// fonts found.
pub fn register_font(font: Option<&Path>) -> anyhow::Result<PathBuf> {
    const CANDIDATES: &[&str] = &[
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
    ];
    let path = match font {
        Some(p) => p.to_path_buf(),
        None => CANDIDATES.iter().map(PathBuf::from).find(|p| p.exists()).context(
            "no TrueType font found for the chart text: pass --font FILE.ttf (on Debian: apt-get install fonts-dejavu-core)",
        )?,
    };
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    // plotters keeps registered fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{} is not a usable TrueType font", path.display()))?;
    Ok(path)
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing failed: {e:?}")
}

fn draw_throughput<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    workload: &str,
    series: &Series,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(plot_err)?;
    let all: Vec<&(usize, f64, f64, f64)> = series.values().flatten().collect();
    let c_max = all.iter().map(|p| p.0).max().unwrap_or(1).max(2) as f64;
    let concurrencies: BTreeSet<usize> = all.iter().map(|p| p.0).collect();
    let ticks: Vec<f64> = concurrencies.iter().map(|&c| c as f64).collect();
    let y_max = all.iter().map(|p| p.3).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(root)
        .caption(format!("{workload}: throughput against concurrency"), ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(70)
        // Ticks at the concurrencies measured, not at powers of ten.
        .build_cartesian_2d((0.8f64..c_max * 1.25).log_scale().with_key_points(ticks), 0f64..y_max)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("concurrent connections")
        .y_desc("successful requests per second")
        .x_label_formatter(&|x| format!("{:.0}", x))
        .y_label_formatter(&|y| format!("{:.0}", y))
        .max_light_lines(1)
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(plot_err)?;
    let names: Vec<&str> = series.keys().map(String::as_str).collect();
    for (server, points) in series {
        let c = colour(server, &names);
        chart
            .draw_series(LineSeries::new(points.iter().map(|p| (p.0 as f64, p.1)), c.stroke_width(2)))
            .map_err(plot_err)?
            .label(server.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(points.iter().map(|p| Circle::new((p.0 as f64, p.1), 4, c.filled()))).map_err(plot_err)?;
        chart
            .draw_series(
                points.iter().map(|p| ErrorBar::new_vertical(p.0 as f64, p.2, p.1, p.3, c.stroke_width(1), 10)),
            )
            .map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

fn draw_latency<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    workload: &str,
    concurrency: usize,
    curves: &[(String, Vec<(f64, f64)>)],
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(plot_err)?;
    let values: Vec<f64> = curves.iter().flat_map(|(_, pts)| pts.iter().map(|p| p.1)).collect();
    let y_min = values.iter().copied().fold(f64::INFINITY, f64::min).max(0.01) * 0.7;
    let y_max = values.iter().copied().fold(0.0, f64::max).max(y_min * 2.0) * 1.5;
    let mut chart = ChartBuilder::on(root)
        .caption(format!("{workload}: latency distribution at concurrency {concurrency}"), ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..4.0, (y_min..y_max).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms, log scale)")
        .x_labels(5)
        .x_label_formatter(&|x| nines_label(*x))
        .y_label_formatter(&|y| if *y >= 10.0 { format!("{y:.0}") } else { format!("{y:.2}") })
        .max_light_lines(4)
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(plot_err)?;
    let names: Vec<&str> = curves.iter().map(|(s, _)| s.as_str()).collect();
    for (server, points) in curves {
        let c = colour(server, &names);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
            .map_err(plot_err)?
            .label(server.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, c.filled()))).map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Png,
    Svg,
}

const SIZE: (u32, u32) = (960, 600);

fn render(
    path: &Path,
    format: Format,
    draw: impl Fn(&DrawingArea<BitMapBackend<'_>, Shift>) -> anyhow::Result<()>,
    draw_svg: impl Fn(&DrawingArea<SVGBackend<'_>, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match format {
        Format::Png => draw(&BitMapBackend::new(path, SIZE).into_drawing_area()),
        Format::Svg => draw_svg(&SVGBackend::new(path, SIZE).into_drawing_area()),
    }
}

/// Writes every chart into `out`; the files written.
pub fn plot(runs: &[PlotRun], out: &Path, format: Format, latency_concurrency: usize) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let ext = if format == Format::Png { "png" } else { "svg" };
    let workloads: BTreeSet<&str> = runs.iter().map(|r| r.workload.as_str()).collect();
    let mut written = Vec::new();
    for workload in workloads {
        let series = throughput_series(runs, workload);
        let path = out.join(format!("throughput-{workload}.{ext}"));
        render(&path, format, |a| draw_throughput(a, workload, &series), |a| draw_throughput(a, workload, &series))?;
        written.push(path);

        // The concurrency asked for, or the nearest one measured.
        let measured: BTreeSet<usize> = runs.iter().filter(|r| r.workload == workload).map(|r| r.concurrency).collect();
        let Some(&c) = measured.iter().min_by_key(|c| c.abs_diff(latency_concurrency)) else { continue };
        let servers: BTreeSet<&str> =
            runs.iter().filter(|r| r.workload == workload).map(|r| r.server.as_str()).collect();
        let curves: Vec<(String, Vec<(f64, f64)>)> = servers
            .into_iter()
            .filter_map(|server| {
                let at_c: Vec<&PlotRun> = runs
                    .iter()
                    .filter(|r| r.workload == workload && r.server == server && r.concurrency == c)
                    .collect();
                let points = latency_points(median_run(&at_c)?);
                (!points.is_empty()).then(|| (server.to_owned(), points))
            })
            .collect();
        if curves.is_empty() {
            continue;
        }
        let path = out.join(format!("latency-{workload}-c{c}.{ext}"));
        render(&path, format, |a| draw_latency(a, workload, c, &curves), |a| draw_latency(a, workload, c, &curves))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(server: &str, workload: &str, c: usize, rps: f64) -> PlotRun {
        PlotRun {
            server: server.into(),
            workload: workload.into(),
            concurrency: c,
            throughput_rps: rps,
            latency_ms: Some(LooseLatency { p50: Some(1.0), p90: Some(2.0), p99: Some(5.0), p999: None }),
            percentiles: vec![],
            failed: false,
            invalid: None,
        }
    }

    #[test]
    fn medians_and_ranges_per_server_and_concurrency() {
        let runs = vec![
            run("keyfort", "token-pkjwt", 16, 900.0),
            run("keyfort", "token-pkjwt", 16, 1100.0),
            run("keyfort", "token-pkjwt", 16, 1000.0),
            run("keyfort", "token-pkjwt", 1, 300.0),
            run("peer", "token-pkjwt", 16, 500.0),
            run("peer", "token-pkjwt", 16, 700.0),
            run("keyfort", "register", 16, 50.0),
        ];
        let series = throughput_series(&runs, "token-pkjwt");
        assert_eq!(series["keyfort"], vec![(1, 300.0, 300.0, 300.0), (16, 1000.0, 900.0, 1100.0)]);
        assert_eq!(series["peer"], vec![(16, 600.0, 500.0, 700.0)], "even count: mean of the middle two");
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    fn the_nines_axis_spreads_the_tail() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines_label(0.0), "p0");
        assert_eq!(nines_label(2.0), "p99");
        assert_eq!(nines_label(3.0), "p99.9");
        let points = latency_points(&run("peer", "register", 64, 1.0));
        assert_eq!(points.len(), 3, "p99.9 missing: three points");
        let mut full = run("keyfort", "register", 64, 1.0);
        full.percentiles =
            crate::latency::CURVE_PERCENTILES.iter().map(|&p| PercentilePoint { percentile: p, ms: 1.0 + p }).collect();
        let points = latency_points(&full);
        assert_eq!(points.len(), crate::latency::CURVE_PERCENTILES.len() - 1, "everything but p100");
    }

    #[test]
    fn charts_are_written_for_each_workload() {
        let dir = tempfile::tempdir().unwrap();
        let runs = vec![
            run("keyfort", "token-pkjwt", 1, 300.0),
            run("keyfort", "token-pkjwt", 64, 1000.0),
            run("peer", "token-pkjwt", 64, 600.0),
            run("keyfort", "register", 16, 50.0),
        ];
        register_font(None).expect("a system font (fonts-dejavu-core) for the chart text");
        let written = plot(&runs, dir.path(), Format::Png, 64).unwrap();
        let names: Vec<String> =
            written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(
            names,
            [
                "throughput-register.png",
                "latency-register-c16.png",
                "throughput-token-pkjwt.png",
                "latency-token-pkjwt-c64.png"
            ]
        );
        for p in &written {
            let bytes = std::fs::read(p).unwrap();
            assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", p.display());
        }
    }
}
