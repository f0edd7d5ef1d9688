//! Header templates: parsing arbitrary text never panics, and whatever renders is a
//! safe header value (no CR, LF or NUL), whatever the request carries.
#![no_main]

use gateway_layers_core::{RequestView, template::HeaderTemplate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (template, query) = text.split_once('\u{1}').unwrap_or((text, "v=a%0d%0ab"));
    let Ok(template) = HeaderTemplate::parse(template) else {
        return;
    };
    let uri = format!("/p?{}", query.replace(['#', ' '], ""));
    let Ok(request) = http::Request::builder().uri(uri.as_str()).body(()) else {
        return;
    };
    if let Ok(value) = template.render(&RequestView::new(&request)) {
        let bytes = value.as_bytes();
        assert!(!bytes.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)));
    }
});
