// imgedge viewer-response (cloudfront-js-2.0): Vary: Accept on responses whose format fmt=auto
// chose from the viewer's Accept (DESIGN.md §10). The cache key holds no Accept (the
// viewer-request function resolved auto into the query before the cache), so the edge cache
// is right as it is; Vary tells browsers and shared caches after CloudFront that another Accept
// may get another format. Explicit formats (fmt=webp) and plain masters vary by nothing.
// (CloudFront runs no viewer-response function on errors of 400 and up; they do not depend on
// Accept.) Deployed minified by build.mjs; tested by viewer-response.test.mjs, also behind the
// viewer-request function on the shared fixtures.
//
// Which requests: viewer-request.js sets the request header below when fmt=auto (given, or in
// a preset) chose the format, and removes any a viewer sent. CloudFront documents that a
// viewer-response event carries the request as the viewer-request step left it for
// Lambda@Edge; for CloudFront Functions it says "the request CloudFront received from the
// viewer". Should the event hold the request as sent instead, the marker is absent but the
// query as sent still shows fmt=auto, or a preset, which may hold it: Vary then too (a
// needless Vary costs a little reuse downstream; a missing one can hand WebP to a viewer
// that cannot show it).
var AUTO_MARK = 'x-imgedge-auto';

// A header or query entry's values: repeats come under multiValue.
function values(entry) {
  return !entry ? [] : entry.multiValue && entry.multiValue.length ? entry.multiValue : [entry];
}

function variesByAccept(request) {
  if (request.headers && request.headers[AUTO_MARK]) return true;
  var query = request.querystring;
  if (!query || typeof query !== 'object') return false;
  if (query.preset) return true;
  var fmt = values(query.fmt);
  for (var i = 0; i < fmt.length; i++) {
    try {
      if (decodeURIComponent(String(fmt[i].value)) === 'auto') return true;
    } catch (e) {
      // Not valid percent-encoding: not auto.
    }
  }
  return false;
}

function handler(event) {
  var response = event.response;
  if (!variesByAccept(event.request)) return response;
  var headers = response.headers || (response.headers = {});
  var given = values(headers.vary).map(function (v) { return v.value; }).join(', ');
  // Already there, or Vary: * (varies by everything).
  if (/(^|,)\s*(accept|\*)\s*(,|$)/i.test(given)) return response;
  headers.vary = { value: given ? given + ', Accept' : 'Accept' };
  return response;
}
