//! The proxy's HTTP/1.1 response-head parser on hostile upstream bytes: never
//! panics; a prefix of an accepted head is incomplete, not wrong; what it accepts is
//! consistent (a chunked body never keeps a `Content-Length`, bodiless responses stay
//! bodiless, a head never exceeds the 64 KiB limit).
#![no_main]

use gateway_layers_proxy::fuzzing::{ParsedHead, parse_response_head};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let head_request = first & 1 == 1;
    let whole = parse_response_head(data, head_request);
    if let Ok(Some(ParsedHead {
        response,
        framing,
        used,
        ..
    })) = &whole
    {
        assert!(*used <= data.len() && *used <= 64 * 1024);
        if framing == "chunked" {
            assert!(response.headers().get("content-length").is_none());
        }
        let status = response.status().as_u16();
        if head_request || status == 204 || status == 304 {
            assert_eq!(framing, "done");
        }
        assert!(
            status >= 200,
            "interim responses are skipped, never returned"
        );
        // Cut inside the head: the first piece always asks for more bytes (the
        // first blank line ends a head, so no shorter final head can be in it).
        let cut = usize::from(first) % *used;
        assert!(
            matches!(parse_response_head(&data[..cut], head_request), Ok(None)),
            "a prefix of an accepted head was not incomplete"
        );
    }
});
