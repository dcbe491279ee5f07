//! Charts as inline SVG, drawn with plotters' SVG backend: no script, no font file, no
//! network, so a page opens anywhere. Each chart keeps the values it was drawn from, which
//! the page writes beside it (`data-*` attributes) for readers and tests.

use anyhow::{Result, anyhow};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

const WIDTH: u32 = 560;
const HEIGHT: u32 = 340;
/// A line of at most this many points also marks each point.
const SHORT_SERIES: usize = 20;

/// Tableau 10: distinguishable, and readable for the common colour-vision deficiencies.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

pub fn color(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mark {
    Line,
    Dashed,
    Points,
    /// Bars from 0 up to each point, `width` wide in x units.
    Bars {
        width: f64,
    },
}

pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub mark: Mark,
    /// Index into the palette.
    pub color: usize,
}

impl Series {
    pub fn line(name: impl Into<String>, points: Vec<(f64, f64)>, color: usize) -> Self {
        Self { name: name.into(), points, mark: Mark::Line, color }
    }
}

pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// A vertical line at this x, with its label (the best epoch).
    pub marker: Option<(f64, String)>,
    /// Fixed axis ranges; otherwise fitted to the data.
    pub x_range: Option<(f64, f64)>,
    pub y_range: Option<(f64, f64)>,
    /// x counts something (epochs, K): ticks without decimals.
    pub whole_x: bool,
    /// The legend in the lower right, for curves that rise (accuracy, recall).
    pub legend_low: bool,
}

impl Chart {
    pub fn new(title: impl Into<String>, x_label: &str, y_label: &str) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: Vec::new(),
            marker: None,
            x_range: None,
            y_range: None,
            whole_x: false,
            legend_low: false,
        }
    }

    /// The chart as an `<svg>` element.
    pub fn svg(&self) -> Result<String> {
        let mut out = String::new();
        self.draw(&mut out).map_err(|err| anyhow!("cannot draw chart {:?}: {err}", self.title))?;
        // plotters writes a standalone document; inline SVG starts at the element.
        let start = out.find("<svg").unwrap_or(0);
        Ok(out[start..].to_string())
    }

    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let points = self.series.iter().flat_map(|s| s.points.iter().copied());
        let finite: Vec<(f64, f64)> =
            points.filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
        let span = |values: Vec<f64>, with_zero: bool| {
            let (mut low, high) = values
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
            if with_zero {
                low = low.min(0.0);
            }
            if !low.is_finite() {
                return (0.0, 1.0);
            }
            if high - low < 1e-12 {
                // A flat series (a constant learning rate): a band around its value.
                let half = (low.abs() * 0.5).max(1e-9);
                return (low - half, high + half);
            }
            let pad = (high - low) * 0.04;
            (low - pad, high + pad)
        };
        let bars = self.series.iter().any(|s| matches!(s.mark, Mark::Bars { .. }));
        let x = self.x_range.unwrap_or_else(|| span(finite.iter().map(|p| p.0).collect(), false));
        let y = self.y_range.unwrap_or_else(|| span(finite.iter().map(|p| p.1).collect(), bars));
        (x, y)
    }

    fn draw(&self, out: &mut String) -> Result<(), Box<dyn std::error::Error + '_>> {
        let ((x0, x1), (y0, y1)) = self.ranges();
        let root = SVGBackend::with_string(out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(58)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        // Counts get ticks only at whole numbers: a 2-epoch run has no epoch 1.5.
        let whole = |x: &f64| {
            if (x - x.round()).abs() < 1e-9 { format!("{x:.0}") } else { String::new() }
        };
        let x_format: &dyn Fn(&f64) -> String = if self.whole_x { &whole } else { &tick };
        chart
            .configure_mesh()
            .x_label_formatter(x_format)
            .y_label_formatter(&tick)
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .light_line_style(RGBColor(238, 238, 238))
            .draw()?;
        for series in &self.series {
            plot(&mut chart, series)?;
        }
        if let Some((x, label)) = &self.marker {
            let grey = RGBColor(90, 90, 90);
            chart
                .draw_series(DashedLineSeries::new(
                    [(*x, y0), (*x, y1)],
                    4,
                    4,
                    grey.stroke_width(1),
                ))?
                .label(label.as_str())
                .legend(move |(lx, ly)| PathElement::new(vec![(lx, ly), (lx + 14, ly)], grey));
        }
        chart
            .configure_series_labels()
            .position(if self.legend_low {
                SeriesLabelPosition::LowerRight
            } else {
                SeriesLabelPosition::UpperRight
            })
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .draw()?;
        root.present()?;
        Ok(())
    }
}

/// A tick label: small values (learning rates) in scientific notation, others to at most
/// four decimals without trailing zeros; float noise around zero (a tick the axis placed at
/// -6.8e-21) reads 0.
fn tick(value: &f64) -> String {
    let magnitude = value.abs();
    if magnitude < 1e-15 {
        return "0".into();
    }
    if !(1e-2..1e5).contains(&magnitude) {
        return format!("{value:.1e}");
    }
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" { "0".into() } else { text.into() }
}

type Plane<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// One series on the chart, with its legend entry.
fn plot(
    chart: &mut Plane<'_, '_>,
    series: &Series,
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    let color = color(series.color);
    let points = series.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite());
    // A short series (a run of a few epochs) also shows its points: one point draws no line.
    if series.mark == Mark::Line && series.points.len() <= SHORT_SERIES {
        let points = series.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite());
        chart.draw_series(points.map(|p| Circle::new(p, 3, color.filled())))?;
    }
    let drawn = match series.mark {
        Mark::Line => chart.draw_series(LineSeries::new(points, color.stroke_width(2)))?,
        Mark::Dashed => {
            chart.draw_series(DashedLineSeries::new(points, 6, 4, color.stroke_width(1)))?
        }
        Mark::Points => {
            chart.draw_series(points.map(|p| Circle::new(p, 2, color.mix(0.7).filled())))?
        }
        Mark::Bars { width } => chart.draw_series(points.map(|(x, y)| {
            Rectangle::new([(x - width / 2.0, 0.0), (x + width / 2.0, y)], color.mix(0.45).filled())
        }))?,
    };
    drawn
        .label(series.name.as_str())
        .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 14, y + 4)], color.filled()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg_element_with_its_legend() {
        let mut chart = Chart::new("loss", "epoch", "loss");
        chart.series.push(Series::line("train_loss", vec![(1.0, 0.9), (2.0, 0.5)], 0));
        chart.marker = Some((2.0, "best epoch 2".into()));
        let svg = chart.svg().unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.contains("train_loss") && svg.contains("best epoch 2"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn ticks_read_as_numbers() {
        assert_eq!(tick(&0.0), "0");
        assert_eq!(tick(&0.25), "0.25");
        assert_eq!(tick(&1200.0), "1200");
        assert_eq!(tick(&0.0005), "5.0e-4");
        assert_eq!(tick(&-0.00001), "-1.0e-5");
        assert_eq!(tick(&-6.8e-21), "0");
    }

    #[test]
    fn a_chart_without_points_still_draws() {
        let chart = Chart::new("empty", "x", "y");
        assert!(chart.svg().unwrap().contains("<svg"));
    }
}
