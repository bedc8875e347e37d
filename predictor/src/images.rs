//! Image queries as SINGA-Auto's predictor takes them: a `multipart/form-data` body whose `img`
//! parts are image files (PNG, JPEG, GIF or BMP), for jobs of an image task. Each file becomes
//! one query: the image as a height × width × 3 array of 0–255 integers (RGB, as SINGA-Auto
//! decodes them) — the nested lists a JSON query of the same image carries.
//!
//! Decoding is bounded before it starts: an image's size is read from its header and the
//! request's decoded values are capped, so a small file that claims a huge image costs nothing.

use std::io::Cursor;

use actix_web::http::header::HeaderMap;
use actix_web::web;
use duma_common::api_error::{ApiError, ErrorCode};
use futures::TryStreamExt;
use image::{ImageError, ImageReader};
use serde_json::Value;

/// The form field SINGA-Auto's clients send images in.
pub const FIELD: &str = "img";

const MULTIPART: &str = "multipart/form-data";

/// Whether a body is a multipart upload (by its `Content-Type`), without allocating: every
/// predict request asks.
pub fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim_start().get(..MULTIPART.len()))
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(MULTIPART))
}

/// Whether a job of `task` takes image uploads.
pub fn task_takes_images(task: &str) -> bool {
    task.starts_with("IMAGE_")
}

/// The queries of a multipart body already read whole (`body`): one per `img` file, at most
/// `max_queries` of them, decoding to at most `max_values` numbers in all.
pub async fn queries(
    headers: &HeaderMap,
    body: web::Bytes,
    max_queries: usize,
    max_values: usize,
) -> Result<Vec<Value>, ApiError> {
    let files = files(headers, body, max_queries).await?;
    web::block(move || decode_all(&files, max_values))
        .await
        .map_err(|_| ApiError::new(ErrorCode::Unavailable, "decoding the images failed"))?
}

/// The bytes of each `img` part, in the order sent.
async fn files(
    headers: &HeaderMap,
    body: web::Bytes,
    max_queries: usize,
) -> Result<Vec<web::Bytes>, ApiError> {
    let stream = futures::stream::once(async move { Ok(body) });
    let mut multipart = actix_multipart::Multipart::new(headers, stream);
    let malformed =
        |e: actix_multipart::MultipartError| invalid(format!("malformed multipart body: {e}"));
    let mut files = Vec::new();
    while let Some(mut field) = multipart.try_next().await.map_err(malformed)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name != FIELD {
            return Err(invalid(format!(
                "unexpected form field `{name}`: send each image as a file in a field named `{FIELD}`"
            )));
        }
        if files.len() == max_queries {
            return Err(ApiError::too_large(format!(
                "more than {max_queries} images in one request; at most {max_queries} are accepted"
            )));
        }
        let mut file = web::BytesMut::new();
        while let Some(chunk) = field.try_next().await.map_err(malformed)? {
            file.extend_from_slice(&chunk);
        }
        if file.is_empty() {
            return Err(invalid(format!("image {} is empty", files.len() + 1)));
        }
        files.push(file.freeze());
    }
    if files.is_empty() {
        return Err(invalid(format!(
            "no image in the upload: send each image as a file in a field named `{FIELD}`"
        )));
    }
    Ok(files)
}

fn decode_all(files: &[web::Bytes], max_values: usize) -> Result<Vec<Value>, ApiError> {
    let mut values = 0usize;
    files
        .iter()
        .enumerate()
        .map(|(i, file)| {
            let number = i + 1;
            let (width, height) = reader(file, number)?
                .into_dimensions()
                .map_err(|e| unreadable(number, e))?;
            values = values.saturating_add(width as usize * height as usize * 3);
            if values > max_values {
                return Err(ApiError::too_large(format!(
                    "the images decode to more than {max_values} values (image {number} is \
                     {width}×{height}); send smaller images or fewer per request"
                )));
            }
            let mut reader = reader(file, number)?;
            let mut limits = image::Limits::default();
            // The decoder's own buffers: the image at up to 16 bits per channel with alpha.
            limits.max_alloc = Some(width as u64 * height as u64 * 8 + (1 << 20));
            reader.limits(limits);
            let rgb = reader
                .decode()
                .map_err(|e| unreadable(number, e))?
                .to_rgb8();
            Ok(Value::Array(
                rgb.rows()
                    .map(|row| {
                        Value::Array(
                            row.map(|pixel| {
                                Value::Array(pixel.0.iter().map(|&c| Value::from(c)).collect())
                            })
                            .collect(),
                        )
                    })
                    .collect(),
            ))
        })
        .collect()
}

fn reader(file: &[u8], number: usize) -> Result<ImageReader<Cursor<&[u8]>>, ApiError> {
    let reader = ImageReader::new(Cursor::new(file))
        .with_guessed_format()
        .map_err(|e| invalid(format!("image {number} cannot be read: {e}")))?;
    if reader.format().is_none() {
        return Err(invalid(format!(
            "image {number} is not a PNG, JPEG, GIF or BMP file"
        )));
    }
    Ok(reader)
}

fn unreadable(number: usize, error: ImageError) -> ApiError {
    match error {
        ImageError::Limits(e) => ApiError::too_large(format!("image {number} is too large: {e}")),
        ImageError::Unsupported(e) => invalid(format!("image {number} is not supported: {e}")),
        other => invalid(format!("image {number} cannot be decoded: {other}")),
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidQuery, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{CONTENT_TYPE, HeaderValue};

    const BOUNDARY: &str = "duma-test-boundary";

    fn headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(&format!("multipart/form-data; boundary={BOUNDARY}")).unwrap(),
        );
        headers
    }

    fn body(parts: &[(&str, &[u8])]) -> web::Bytes {
        let mut body = Vec::new();
        for (i, (name, bytes)) in parts.iter().enumerate() {
            body.extend_from_slice(
                format!(
                    "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; \
                     filename=\"{i}.png\"\r\nContent-Type: image/png\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        body.into()
    }

    fn png(width: u32, height: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
        let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb(pixel(x, y)));
        let mut bytes = Cursor::new(Vec::new());
        image.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
        bytes.into_inner()
    }

    async fn decode(parts: &[(&str, &[u8])]) -> Result<Vec<Value>, ApiError> {
        queries(&headers(), body(parts), 10, 1000).await
    }

    fn message(error: ApiError) -> String {
        error.to_string()
    }

    #[actix_web::test]
    async fn each_image_becomes_rows_of_rgb_pixels_in_the_order_sent() {
        let first = png(3, 2, |x, y| [x as u8, y as u8, 7]);
        let second = png(1, 1, |_, _| [255, 0, 128]);
        let queries = decode(&[("img", &first), ("img", &second)]).await.unwrap();
        assert_eq!(queries.len(), 2);
        assert_eq!(
            queries[0],
            serde_json::json!([
                [[0, 0, 7], [1, 0, 7], [2, 0, 7]],
                [[0, 1, 7], [1, 1, 7], [2, 1, 7]]
            ])
        );
        assert_eq!(queries[1], serde_json::json!([[[255, 0, 128]]]));
    }

    #[actix_web::test]
    async fn what_is_not_an_image_upload_is_refused_by_name() {
        let image = png(1, 1, |_, _| [0, 0, 0]);
        let other = decode(&[("file", &image)]).await.unwrap_err();
        assert!(message(other).contains("`file`"));
        let text = decode(&[("img", b"not an image at all")])
            .await
            .unwrap_err();
        assert!(message(text).contains("image 1 is not a PNG"));
        let truncated = decode(&[("img", &image), ("img", &image[..20])])
            .await
            .unwrap_err();
        assert!(message(truncated).contains("image 2"));
        let empty = decode(&[("img", b"")]).await.unwrap_err();
        assert!(message(empty).contains("image 1 is empty"));
        // A form with no part at all is not a complete multipart body.
        assert!(message(decode(&[]).await.unwrap_err()).contains("malformed multipart"));
        let broken = queries(&headers(), web::Bytes::from_static(b"--nope"), 10, 1000).await;
        assert!(message(broken.unwrap_err()).contains("malformed multipart"));
    }

    #[actix_web::test]
    async fn images_that_decode_too_large_are_refused_before_decoding() {
        // 1000 values allowed: 18 × 18 × 3 = 972 fits, 19 × 19 × 3 = 1083 does not.
        let fits = png(18, 18, |_, _| [1, 2, 3]);
        assert!(decode(&[("img", &fits)]).await.is_ok());
        let big = png(19, 19, |_, _| [1, 2, 3]);
        let refused = decode(&[("img", &big)]).await.unwrap_err();
        assert_eq!(refused.code(), ErrorCode::PayloadTooLarge);
        let two = decode(&[("img", &fits), ("img", &fits)]).await.unwrap_err();
        assert!(message(two).contains("image 2 is 18×18"));
        let many: Vec<(&str, &[u8])> = (0..11).map(|_| ("img", &fits[..])).collect();
        let refused = queries(&headers(), body(&many), 10, usize::MAX)
            .await
            .unwrap_err();
        assert!(message(refused).contains("at most 10"));
    }
}
