//! Reading an HTTP answer's body without trusting its size: whoever answers chooses it, and
//! a shop's small computer must not give its memory to a 400 MB reply.

/// Why a body was not read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Longer than the limit, declared or found while reading.
    TooLarge,
    Network(reqwest::Error),
}

/// The body of `response`, read chunk by chunk and given up as soon as it passes `limit`
/// bytes (decompressed): a declared `Content-Length` over the limit is refused unread.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    limit: u64,
) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Network)? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
