//! The emulator's HTML: the gallery of the bucket's masters with variant links.

use std::fmt::Write as _;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::PLAYGROUND_PATH;
use crate::key::{key_to_uri, MasterKey, VARIANTS_PREFIX};
use crate::sign::SigningKeys;

/// What a key keeps unescaped as a query value: readable paths in the playground links.
const QUERY_VALUE_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The keys of a listing that viewers can address as masters (no `_variants/`, only
/// valid master keys), at most 500 of them.
pub fn masters(keys: &[String]) -> Vec<String> {
    keys.iter()
        .filter(|k| !k.starts_with(VARIANTS_PREFIX))
        .filter(|k| MasterKey::from_uri(&key_to_uri(k)).is_ok())
        .take(500)
        .cloned()
        .collect()
}

/// Variant links shown beside each master in the gallery.
pub const GALLERY_VARIANTS: &[(&str, &str)] = &[
    ("master", ""),
    ("512 webp", "w=512&fmt=webp"),
    ("800×450 cover jpeg", "w=800&h=450&fmt=jpeg&q=70"),
    (
        "400² contain png",
        "w=400&h=400&fit=contain&bg=1e293b&fmt=png",
    ),
    ("320 @2x auto", "w=320&dpr=2&fmt=auto"),
];

pub(crate) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// `path?query`, signed when keys are configured (the emulator's own links must pass its
/// signature check).
pub fn link(keys: Option<&SigningKeys>, path: &str, query: &str) -> String {
    let query = match keys {
        Some(keys) => keys.signed_query(path, query),
        None => query.to_string(),
    };
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    }
}

/// The playground with `key` preselected.
pub fn playground_link(key: &str) -> String {
    format!(
        "{PLAYGROUND_PATH}?master={}",
        utf8_percent_encode(key, QUERY_VALUE_KEEP)
    )
}

/// The gallery page: every master with a thumbnail and links to a few variants and to the
/// playground.
pub fn gallery_html(store: &str, masters: &[String], keys: Option<&SigningKeys>) -> String {
    let mut html = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>imgedge gallery</title><style>\
         body{font-family:system-ui,sans-serif;margin:2rem;background:#f8fafc;color:#0f172a}\
         .grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:1rem}\
         figure{margin:0;background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:.5rem}\
         img{width:100%;height:auto;display:block;border-radius:4px}\
         figcaption{font-size:.8rem;word-break:break-all;margin:.4rem 0}\
         figure a{margin-right:.5rem;font-size:.8rem}figure a.playground{font-weight:600}\
         code{font-size:.85rem}\
         </style></head><body>\n<h1>imgedge</h1>\n",
    );
    let _ = writeln!(
        html,
        "<p>{} masters in <code>{}</code>. Thumbnails are <code>?w=256&amp;fmt=webp</code> variants, \
         made on first request and then served from the edge cache \
         (see the <code>X-Cache</code> and <code>Server-Timing</code> headers). \
         Try every parameter in the <a href=\"{PLAYGROUND_PATH}\">playground</a>.</p>",
        masters.len(),
        html_escape(store)
    );
    if masters.is_empty() {
        html.push_str(
            "<p>The bucket has no masters yet: put PNG, JPEG or WebP files into it.</p>\n",
        );
    }
    html.push_str("<div class=\"grid\">\n");
    for key in masters {
        let path = key_to_uri(key);
        let _ = write!(
            html,
            "<figure><a href=\"{href}\"><img src=\"{thumb}\" loading=\"lazy\" \
             alt=\"{alt}\"></a><figcaption>{alt}</figcaption>",
            href = html_escape(&path),
            thumb = html_escape(&link(keys, &path, "w=256&fmt=webp")),
            alt = html_escape(key)
        );
        for (label, query) in GALLERY_VARIANTS {
            let href = html_escape(&link(keys, &path, query));
            let _ = write!(html, "<a href=\"{href}\">{}</a>", html_escape(label));
        }
        let _ = writeln!(
            html,
            "<a class=\"playground\" href=\"{}\">playground</a></figure>",
            html_escape(&playground_link(key))
        );
    }
    html.push_str("</div>\n</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gallery_escapes_keys_and_links_variants() {
        let html = gallery_html("fs:<x>", &["o/a\"<b>.png".to_string()], None);
        assert!(html.contains("fs:&lt;x&gt;"));
        assert!(!html.contains("a\"<b>"));
        assert!(html.contains("src=\"/o/a%22%3Cb%3E.png?w=256&amp;fmt=webp\""));
        assert!(html.contains("href=\"/o/a%22%3Cb%3E.png?w=512&amp;fmt=webp\""));
        assert!(html.contains("1 masters"));
        assert!(html.contains("href=\"/_imgedge/playground\""));
        assert!(html.contains("href=\"/_imgedge/playground?master=o/a%22%3Cb%3E.png\""));
        let empty = gallery_html("fs:x", &[], None);
        assert!(empty.contains("no masters yet"));
    }
}
