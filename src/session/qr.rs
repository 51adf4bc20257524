//! The login QR code: saved as a PNG for the shop owner to open (the path is logged), and
//! drawn in the terminal when someone is watching it.

use std::io::IsTerminal;
use std::path::Path;

use qrcode::QrCode;

use super::error::SessionError;

/// The URL the phone's scanner must read for `uuid`.
pub fn login_url(uuid: &str) -> String {
    format!("https://login.weixin.qq.com/l/{uuid}")
}

/// Encodes `url`, writes the PNG to `path` and, when stdout is a terminal, prints it there.
pub fn show(url: &str, path: &Path) -> Result<(), SessionError> {
    let code = QrCode::new(url.as_bytes()).map_err(|e| SessionError::Qr(e.to_string()))?;
    save_png(&code, path)?;
    if std::io::stdout().is_terminal() {
        println!("{}", terminal_art(&code));
        println!(
            "Scan this QR code with WeChat on the shop's phone (also saved as {})",
            path.display()
        );
    }
    Ok(())
}

/// `url` as a QR code in a PNG, at least 320 pixels square with its quiet zone: what the
/// saved file and the shop's page show.
pub fn png(url: &str) -> Result<Vec<u8>, SessionError> {
    let code = QrCode::new(url.as_bytes()).map_err(|e| SessionError::Qr(e.to_string()))?;
    encode_png(&code)
}

fn encode_png(code: &QrCode) -> Result<Vec<u8>, SessionError> {
    let image = code
        .render::<image::Luma<u8>>()
        .quiet_zone(true)
        .min_dimensions(320, 320)
        .build();
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| SessionError::Qr(e.to_string()))?;
    Ok(png)
}

fn save_png(code: &QrCode, path: &Path) -> Result<(), SessionError> {
    let png = encode_png(code)?;
    // The QR logs the account in for whoever scans it first: keep it private too.
    crate::fsutil::write_atomically(path, &png).map_err(|source| SessionError::File {
        what: "cannot save the login QR code to",
        path: path.to_path_buf(),
        source,
    })
}

/// Two QR rows per text line, so the code stays square in a terminal.
fn terminal_art(code: &QrCode) -> String {
    code.render::<qrcode::render::unicode::Dense1x2>()
        .dark_color(qrcode::render::unicode::Dense1x2::Light)
        .light_color(qrcode::render::unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build()
}
