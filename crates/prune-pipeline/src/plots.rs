//! The report's figure (`report.svg`, drawn with plotters): per layer, the final model's
//! heads, FFN width and hidden width as fractions of the teacher's; and the dev metric
//! against whole-model parameters, the teacher and every stage.

use crate::error::{PipelineError, Result};
use crate::report::{ModelSummary, Report};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Heads, FFN and hidden width, in the figure's colours.
const SERIES: [(&str, RGBColor); 3] = [
    ("heads", RGBColor(0x44, 0x77, 0xaa)),
    ("FFN", RGBColor(0xee, 0x66, 0x77)),
    ("hidden", RGBColor(0x22, 0x88, 0x33)),
];

/// The figure of `report` as SVG text.
pub fn svg(report: &Report) -> Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (960, 320)).into_drawing_area();
        let draw = || -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
            root.fill(&WHITE)?;
            let (left, right) = root.split_horizontally(480);
            widths(&left, &report.teacher, &report.final_model.model)?;
            metric_vs_parameters(&right, report)?;
            root.present()
        };
        draw().map_err(|e| PipelineError::Plot(e.to_string()))?;
    }
    Ok(out)
}

/// `kept / of` at `layer` (0 when the layer is missing).
fn fraction(kept: &[usize], of: &[usize], layer: usize) -> f64 {
    kept.get(layer).map_or(0.0, |&k| {
        k as f64 / of.get(layer).copied().unwrap_or(1).max(1) as f64
    })
}

/// Bars per layer: the final model's widths as fractions of the teacher's.
fn widths<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    teacher: &ModelSummary,
    last: &ModelSummary,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let layers = teacher.heads.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(
            "kept per layer (fraction of the teacher's)",
            ("sans-serif", 14),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d(0.0..layers as f64, 0.0..1.5)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("layer")
        .x_labels(layers + 1)
        .x_label_formatter(&|x| format!("{}", x.floor()))
        .draw()?;
    let hidden = last.hidden as f64 / teacher.hidden.max(1) as f64;
    for (k, (name, colour)) in SERIES.into_iter().enumerate() {
        let bars = (0..layers).map(|l| {
            let v = match k {
                0 => fraction(&last.heads, &teacher.heads, l),
                1 => fraction(&last.intermediate, &teacher.intermediate, l),
                _ => hidden,
            };
            let x = l as f64 + 0.14 + 0.25 * k as f64;
            Rectangle::new([(x, 0.0), (x + 0.22, v)], colour.filled())
        });
        chart
            .draw_series(bars)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 8, y + 4)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
}

/// The dev metric against whole-model parameters (millions): the teacher, then the
/// stages in order, joined by a line.
fn metric_vs_parameters<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    report: &Report,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let t = &report.teacher;
    let mut points = vec![("teacher".to_string(), t.params_total, t.metric)];
    points.extend(
        report
            .stages
            .iter()
            .map(|s| (s.name.clone(), s.params_total, s.metric)),
    );
    let xy: Vec<(f64, f64)> = points
        .iter()
        .map(|(_, p, m)| (*p as f64 / 1e6, *m))
        .collect();
    let finite = || xy.iter().filter(|p| p.1.is_finite());
    let x_max = xy.iter().map(|p| p.0).fold(0.0, f64::max) * 1.15 + 0.1;
    let lo = finite().map(|p| p.1).fold(1.0, f64::min);
    let hi = finite().map(|p| p.1).fold(0.0, f64::max);
    let pad = ((hi - lo) * 0.2).max(0.01);
    let mut chart = ChartBuilder::on(area)
        .caption("dev metric against parameters", ("sans-serif", 14))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..x_max, (lo - pad)..(hi + pad))?;
    chart
        .configure_mesh()
        .x_desc("parameters (millions)")
        .y_desc("dev metric")
        .draw()?;
    let line = RGBColor(0x44, 0x77, 0xaa);
    chart.draw_series(LineSeries::new(xy[1..].to_vec(), line))?;
    chart.draw_series(points.iter().zip(&xy).map(|((name, _, _), &p)| {
        EmptyElement::at(p)
            + Circle::new((0, 0), 3, line.filled())
            + Text::new(name.clone(), (5, -12), ("sans-serif", 11))
    }))?;
    Ok(())
}
