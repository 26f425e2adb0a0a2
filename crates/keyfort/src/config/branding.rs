//! `[branding]`: how the customer's pages look — the bank's name, logo and colour, and a
//! directory whose templates override the built-in ones.

use std::path::PathBuf;

use super::loader::{Paths, Section};

/// A colour as `#rrggbb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Colour {
    pub red: u8,
    pub green: u8,
    pub blue: u8,
}

impl Colour {
    /// `#rgb` or `#rrggbb`.
    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.strip_prefix('#')?;
        let digits: Vec<u8> = hex.chars().map(|c| c.to_digit(16).map(|d| d as u8)).collect::<Option<_>>()?;
        match digits.as_slice() {
            [r, g, b] => Some(Self { red: r * 17, green: g * 17, blue: b * 17 }),
            [r1, r2, g1, g2, b1, b2] => Some(Self { red: r1 * 16 + r2, green: g1 * 16 + g2, blue: b1 * 16 + b2 }),
            _ => None,
        }
    }

    pub fn css(&self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.red, self.green, self.blue)
    }

    /// WCAG 2 relative luminance.
    fn luminance(&self) -> f64 {
        let channel = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.03928 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(self.red) + 0.7152 * channel(self.green) + 0.0722 * channel(self.blue)
    }

    /// WCAG 2 contrast ratio with white, on which the pages' buttons and header put text.
    pub fn contrast_with_white(&self) -> f64 {
        1.05 / (self.luminance() + 0.05)
    }
}

/// WCAG 2 AA for normal text.
const MIN_CONTRAST: f64 = 4.5;

#[derive(Debug, Clone)]
pub struct BrandingConfig {
    pub bank_name: String,
    /// A PNG, SVG, JPEG or WebP shown in the pages' header instead of the bank's name.
    pub logo_file: Option<PathBuf>,
    /// The header, buttons and focus colour; white text must be readable on it.
    pub primary_colour: Colour,
    /// Templates here (`base.html`, `login.html`, `consent.html`, `error.html`, the customer
    /// page's `customer-sign-in.html` and `customer-access.html`, `credentials.html`) replace the
    /// built-in ones of the same name.
    pub template_dir: Option<PathBuf>,
}

pub(super) fn read(mut s: Section<'_>, paths: &Paths<'_>) -> BrandingConfig {
    let bank_name = s.take::<String>("bank_name").unwrap_or_else(|| "Keyfort Bank".to_owned());
    if bank_name.trim().is_empty() || bank_name.chars().count() > 100 {
        s.problem("bank_name", "must be between 1 and 100 characters: it is shown on every page");
    }
    let default_colour = Colour { red: 0x0b, green: 0x3d, blue: 0x91 };
    let primary_colour = match s.take::<String>("primary_colour") {
        None => default_colour,
        Some(text) => match Colour::parse(&text) {
            None => {
                s.problem("primary_colour", format!("\"{text}\" is not a colour such as \"#0b3d91\""));
                default_colour
            }
            Some(colour) if colour.contrast_with_white() < MIN_CONTRAST => {
                s.problem(
                    "primary_colour",
                    format!(
                        "\"{text}\" has a contrast of {:.1}:1 with white; pages put white text on it, and WCAG AA needs at least {MIN_CONTRAST}:1 (choose a darker colour)",
                        colour.contrast_with_white()
                    ),
                );
                default_colour
            }
            Some(colour) => colour,
        },
    };
    let logo_file = s.take::<PathBuf>("logo_file").map(|p| paths.resolve(p));
    if let Some(logo) = &logo_file {
        let known = ["png", "svg", "jpg", "jpeg", "webp"];
        let extension = logo.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
        if !known.contains(&extension.as_str()) {
            s.problem("logo_file", format!("{} must be a .png, .svg, .jpg or .webp file", logo.display()));
        }
    }
    let template_dir = s.take::<PathBuf>("template_dir").map(|p| paths.resolve(p));
    BrandingConfig { bank_name, logo_file, primary_colour, template_dir }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_and_their_contrast() {
        assert_eq!(Colour::parse("#0b3d91").unwrap().css(), "#0b3d91");
        assert_eq!(Colour::parse("#fff").unwrap().css(), "#ffffff");
        assert!(
            Colour::parse("0b3d91").is_none() && Colour::parse("#12345").is_none() && Colour::parse("#ggg").is_none()
        );
        assert!((Colour::parse("#ffffff").unwrap().contrast_with_white() - 1.0).abs() < 1e-9);
        assert!((Colour::parse("#000000").unwrap().contrast_with_white() - 21.0).abs() < 1e-9);
        assert!(Colour::parse("#0b3d91").unwrap().contrast_with_white() > MIN_CONTRAST);
        assert!(Colour::parse("#ffcc00").unwrap().contrast_with_white() < MIN_CONTRAST);
    }
}
