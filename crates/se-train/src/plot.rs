//! Pictures as SVG and PNG through `plotters`: a [`Picture`] draws itself on any plotters
//! backend, and [`svg`] and [`png`] render it. Text is set in the embedded DejaVu Sans
//! (plotters' own font loading would need the system's fontconfig).

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

/// The result of drawing on a plotters backend.
pub type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Something drawn the same way as SVG and as PNG.
pub trait Picture {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);

    /// Draws the picture on `area`.
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

/// Makes the embedded DejaVu Sans plotters' "sans-serif" (its text layout needs a font even
/// for SVG).
pub fn register_font() {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .unwrap_or_else(|_| eprintln!("warning: the embedded font did not load"));
    });
}

/// The picture as a standalone SVG document.
pub fn svg(picture: &impl Picture) -> Result<String, String> {
    register_font();
    let mut svg = String::new();
    {
        let area = SVGBackend::with_string(&mut svg, picture.size()).into_drawing_area();
        picture.draw(&area).map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// The picture as a PNG image.
pub fn png(picture: &impl Picture) -> Result<Vec<u8>, String> {
    register_font();
    let (width, height) = picture.size();
    let mut pixels = vec![0u8; (width * height * 3) as usize];
    {
        let area = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        picture.draw(&area).map_err(|e| e.to_string())?;
    }
    let image = image::RgbImage::from_raw(width, height, pixels)
        .ok_or("the picture buffer has the wrong size")?;
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok(png)
}

/// `low..high` widened to a visible range when it is empty or a single value.
pub fn value_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (low, high) = values
        .filter(|v| v.is_finite())
        .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
    if low > high {
        0.0..1.0
    } else if high - low < 1e-9 {
        low - 0.5..high + 0.5
    } else {
        low..high
    }
}
