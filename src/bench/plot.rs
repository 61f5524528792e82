//! `bench --plot`: the report as one self-contained SVG with two panels,
//! batch-1 latency against input length (p50, with p5–p95 whiskers) and
//! throughput against batch size, one series per device × precision
//! (feature `plot`, with the pure-Rust `plotters` and its SVG backend).
//!
//! Readable in black and white and in dark viewers: an explicit white
//! background, and a distinct marker per series as well as a colour.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{BenchReport, DeviceReport};

/// Why a chart could not be drawn (plotters' own error, as text).
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the chart: {0}")]
pub struct PlotError(String);

fn plot_error(err: impl std::fmt::Display) -> PlotError {
    PlotError(err.to_string())
}

const WIDTH: u32 = 1400;
const HEIGHT: u32 = 600;

/// Okabe–Ito colours: distinct for colour-blind readers, and of different
/// lightness in greyscale.
const COLOURS: [RGBColor; 6] = [
    RGBColor(0, 0, 0),
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
];

/// Series `index`'s marker, centred on the point it is added to: filled
/// circle, open triangle, cross, filled square, open circle, open square,
/// then round again.
fn marker_shape<DB: DrawingBackend>(
    index: usize,
    colour: RGBColor,
) -> DynElement<'static, DB, (i32, i32)> {
    let filled = colour.filled();
    let outline = colour.stroke_width(2);
    match index % 6 {
        0 => Circle::new((0, 0), 5, filled).into_dyn(),
        1 => TriangleMarker::new((0, 0), 7, outline).into_dyn(),
        2 => Cross::new((0, 0), 5, outline).into_dyn(),
        3 => Rectangle::new([(-4, -4), (4, 4)], filled).into_dyn(),
        4 => Circle::new((0, 0), 5, outline).into_dyn(),
        _ => Rectangle::new([(-4, -4), (4, 4)], outline).into_dyn(),
    }
}

/// The chart's title: model, CPU, threads and version.
pub fn title(report: &BenchReport) -> String {
    format!(
        "sentiment {} — {} — {}, {} threads",
        env!("CARGO_PKG_VERSION"),
        report.model,
        report.system.cpu,
        report.threads
    )
}

/// The report as an SVG document.
pub fn render_svg(report: &BenchReport) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let root = root
            .titled(&title(report), ("sans-serif", 20).into_font().color(&BLACK))
            .map_err(plot_error)?;
        let (left, right) = root.split_horizontally(WIDTH / 2);
        latency_panel(&left, &report.devices)?;
        throughput_panel(&right, &report.devices)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// (min, max) of the values, or (1, 2) with none.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if low.is_finite() && high.is_finite() && low > 0.0 {
        (low, high.max(low * 1.000_001))
    } else {
        (1.0, 2.0)
    }
}

/// The distinct measured values, as tick positions.
fn measured(values: impl Iterator<Item = usize>) -> Vec<f64> {
    let mut values: Vec<usize> = values.collect();
    values.sort_unstable();
    values.dedup();
    values.into_iter().map(|v| v as f64).collect()
}

/// Ticks for a log axis over `low..high`: 1, 2 and 5 times the powers of
/// ten inside it, or every integer multiple where that gives fewer than
/// three (a range under a decade, as one measured length gives).
fn log_ticks(low: f64, high: f64) -> Vec<f64> {
    let decades = low.log10().floor() as i32..=high.log10().ceil() as i32;
    let within = |multiples: &[f64]| -> Vec<f64> {
        decades
            .clone()
            .flat_map(|e| multiples.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|v| (low..=high).contains(v))
            .collect()
    };
    let ticks = within(&[1.0, 2.0, 5.0]);
    if ticks.len() >= 3 {
        return ticks;
    }
    within(&[1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
}

/// A panel with its caption and room for the axes' labels.
fn panel<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    caption: &str,
) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(caption, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(70);
    builder
}

/// Series `index`'s marker at each point, over whatever is drawn already.
fn draw_markers<X, Y>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<X, Y>>,
    points: &[(f64, f64)],
    index: usize,
) -> Result<(), PlotError>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let colour = COLOURS[index % COLOURS.len()];
    chart
        .draw_series(
            points
                .iter()
                .map(|&(x, y)| EmptyElement::at((x, y)) + marker_shape(index, colour)),
        )
        .map_err(plot_error)?;
    Ok(())
}

fn latency_panel(
    area: &DrawingArea<SVGBackend, Shift>,
    series: &[DeviceReport],
) -> Result<(), PlotError> {
    let (x_low, x_high) = bounds(
        series
            .iter()
            .flat_map(|d| d.latency.iter().map(|r| r.tokens as f64)),
    );
    let (y_low, y_high) = bounds(series.iter().flat_map(|d| {
        d.latency
            .iter()
            .flat_map(|r| [r.total.p5_ms, r.total.p95_ms])
    }));
    let x_range = (x_low / 1.25)..(x_high * 1.25);
    let y_range = (y_low / 1.3)..(y_high * 1.3);
    let lengths = measured(
        series
            .iter()
            .flat_map(|d| d.latency.iter().map(|r| r.tokens)),
    );
    let y_ticks = log_ticks(y_range.start, y_range.end);
    let mut chart = panel(area, "Batch-1 latency by input length")
        .build_cartesian_2d(
            x_range.log_scale().with_key_points(lengths),
            y_range.log_scale().with_key_points(y_ticks),
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        // Labels where something was measured, and no minor lines (on a
        // log axis they crowd into a grey band).
        .light_line_style(TRANSPARENT)
        .x_desc("input length (tokens, log scale)")
        .y_desc("latency, ms (p50; whiskers p5–p95; log scale)")
        .axis_desc_style(("sans-serif", 15))
        .label_style(("sans-serif", 13))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            format!("{y:.3}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        })
        .draw()
        .map_err(plot_error)?;
    for (index, device) in series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let points: Vec<(f64, f64)> = device
            .latency
            .iter()
            .map(|r| (r.tokens as f64, r.total.p50_ms))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(plot_error)?
            .label(device.series())
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(-12, 0), (12, 0)], colour.stroke_width(2))
                    + marker_shape(index, colour)
            });
        chart
            .draw_series(device.latency.iter().map(|r| {
                ErrorBar::new_vertical(
                    r.tokens as f64,
                    r.total.p5_ms,
                    r.total.p50_ms,
                    r.total.p95_ms,
                    colour.stroke_width(1),
                    8,
                )
            }))
            .map_err(plot_error)?;
        draw_markers(&mut chart, &points, index)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(plot_error)
}

fn throughput_panel(
    area: &DrawingArea<SVGBackend, Shift>,
    series: &[DeviceReport],
) -> Result<(), PlotError> {
    let (x_low, x_high) = bounds(
        series
            .iter()
            .flat_map(|d| d.throughput.iter().map(|r| r.batch_size as f64)),
    );
    let (_, y_high) = bounds(
        series
            .iter()
            .flat_map(|d| d.throughput.iter().map(|r| r.sentences_per_s)),
    );
    let x_range = (x_low / 1.4)..(x_high * 1.4);
    let batch_sizes = measured(
        series
            .iter()
            .flat_map(|d| d.throughput.iter().map(|r| r.batch_size)),
    );
    let mut chart = panel(area, "Throughput by batch size")
        .build_cartesian_2d(
            x_range.log_scale().with_key_points(batch_sizes),
            0.0..y_high * 1.15,
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        // Labels at the measured batch sizes, no minor lines.
        .light_line_style(TRANSPARENT)
        .x_desc("batch size (texts per forward pass, log scale)")
        .y_desc("throughput, sentences/s (length-sorted dataset)")
        .axis_desc_style(("sans-serif", 15))
        .label_style(("sans-serif", 13))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(plot_error)?;
    for (index, device) in series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let points: Vec<(f64, f64)> = device
            .throughput
            .iter()
            .map(|r| (r.batch_size as f64, r.sentences_per_s))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(plot_error)?;
        draw_markers(&mut chart, &points, index)?;
    }
    Ok(())
}
