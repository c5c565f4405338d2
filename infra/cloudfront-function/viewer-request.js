// imgedge viewer-request (cloudfront-js-2.0): mirrors edge/src/key.rs, sign.rs, policy.rs and
// spec.rs. Order: key (400) -> signature (403) -> preset -> query (400) -> policy (400). Then
// the canonical query, fmt=auto from Accept, and the path's percent-encoding normalised, so
// equivalent URLs share one cache entry; bad URLs get the origin's JSON errors here. In
// regional mode the URL then becomes its variant's key, which the bucket answers directly.
// Deployed minified by build.mjs (the 10 KB limit), which also bakes the policy and the mode
// in; tested on tests/fixtures/{spec,signature,policy}-cases.json.
import crypto from 'crypto';
import cf from 'cloudfront';

// build.mjs --policy FILE replaces this line with the checked, compiled policy.
var POLICY = null;
// build.mjs --mode regional replaces this line with the variants' prefix of the core's
// transform version ('_variants/v<N>/', read from edge/src/key.rs); null = edge mode.
var VARIANTS = null;
// Regional mode: the URL as the viewer sent it, for the regional function to send a viewer
// back to once a variant too large for its answer is stored; only ever set here.
var VIEWER_URL = 'x-imgedge-viewer-url';
var EXTENSIONS = { png: 'png', jpeg: 'jpg', webp: 'webp' };
// KeyValueStore key of the signing secrets (a keys file's text); absent = signing off.
var KEYS_NAME = 'signing-keys';
// Request header for viewer-response.js: set when fmt=auto chose the format (the response
// then gets Vary: Accept); only ever set here, a viewer's own is removed.
var AUTO_MARK = 'x-imgedge-auto';
var MAX_SIDE = 8192;
var MAX_QUERY = 2048;
var MAX_KEY = 1024;
var NAMES = 'w, h, fit, fmt, q, dpr, bg';
var MASTERS = { png: 'png', jpg: 'jpeg', jpeg: 'jpeg', webp: 'webp' };
var FITS = { cover: 1, contain: 1, fill: 1, inside: 1, outside: 1 };
var FORMATS = { webp: 'webp', avif: 'avif', png: 'png', jpeg: 'jpeg', jpg: 'jpeg', auto: 'auto' };
var ALLOWED = {
  w: 'w must be an integer from 1 to 8192',
  h: 'h must be an integer from 1 to 8192',
  q: 'q must be an integer from 1 to 100',
  dpr: 'dpr must be a number from 1 to 4 with at most 2 decimals (e.g. 2 or 1.5)',
  fit: 'fit must be one of cover, contain, fill, inside, outside (lowercase)',
  fmt: 'fmt must be one of webp, avif, png, jpeg (or jpg), auto (lowercase)',
  bg: 'bg must be a colour as 6 hex digits RRGGBB, without \'#\' (e.g. ff8800)'
};

function own(table, name) {
  return Object.prototype.hasOwnProperty.call(table, name);
}

function Fail(status, error, param, message) {
  this.status = status;
  this.error = error;
  this.param = param;
  this.message = message;
}

function badKey(message) {
  return new Fail(400, 'invalid_key', null, message);
}

function bad(param, message) {
  return new Fail(400, 'invalid_parameter', param, message);
}

function forbidden(message) {
  return new Fail(403, 'invalid_signature', 'sig', message);
}

function badValue(name, value) {
  return bad(name, ALLOWED[name] + ', got \'' + String(value).slice(0, 40) + '\'');
}

// Percent-decode strictly: a '%' not followed by two hex digits, or bytes that are not
// UTF-8, make the text invalid (null). '+' stays a literal plus.
function decode(text) {
  if (/%(?![0-9A-Fa-f]{2})/.test(text)) return null;
  try {
    return decodeURIComponent(text);
  } catch (e) {
    return null;
  }
}

// [UTF-8 length, has a control character (Unicode Cc)]. A surrogate pair is 4 bytes.
function scan(text) {
  var n = 0, control = false;
  for (var i = 0; i < text.length; i++) {
    var c = text.charCodeAt(i);
    n += c < 0x80 ? 1 : c < 0x800 || (c >= 0xd800 && c <= 0xdfff) ? 2 : 3;
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) control = true;
  }
  return [n, control];
}

// The master key from the path, or a Fail; same checks and order as MasterKey::from_uri.
function masterFormat(uri) {
  if (uri.charAt(0) !== '/') return badKey('the path must start with \'/\'');
  var key = decode(uri.slice(1));
  if (key === null) return badKey('the path is not valid percent-encoded UTF-8');
  if (key === '') return badKey('the path names no image');
  var seen = scan(key);
  if (seen[0] > MAX_KEY) return badKey('the key is longer than 1024 bytes');
  if (seen[1]) return badKey('the path contains a control character');
  if (key.indexOf('\\') >= 0) return badKey('the path contains a backslash');
  var segments = key.split('/');
  for (var i = 0; i < segments.length; i++) {
    var s = segments[i];
    if (s === '' || s === '.' || s === '..') {
      return badKey('the path has an empty, \'.\' or \'..\' segment');
    }
  }
  if (key.indexOf('_variants/') === 0) return new Fail(404, 'not_found', null, 'not found');
  var file = segments[segments.length - 1];
  var dot = file.lastIndexOf('.');
  var ext = dot >= 0 ? file.slice(dot + 1) : '';
  if (!own(MASTERS, ext)) {
    return badKey('the path must name an image ending in .png, .jpg, .jpeg or .webp (lowercase)');
  }
  return MASTERS[ext];
}

// One spelling per path (RFC 3986 6.2.2): escapes of unreserved characters (ALPHA DIGIT
// - . _ ~) decoded, every other escape in uppercase hex, the rest as sent. It decodes to
// the same key, so the key check before it holds for it too.
function normalPath(uri) {
  return uri.replace(/%([0-9A-Fa-f]{2})/g, function (escape, hex) {
    var c = String.fromCharCode(parseInt(hex, 16));
    return /[A-Za-z0-9._~-]/.test(c) ? c : escape.toUpperCase();
  });
}

// The query object as [name, rawValue] pairs. CloudFront groups repeats under
// multiValue; each repeat is kept so that it is reported.
function pairs(querystring) {
  var out = [];
  for (var name in querystring) {
    var entry = querystring[name];
    var values = entry.multiValue && entry.multiValue.length ? entry.multiValue : [entry];
    for (var i = 0; i < values.length; i++) out.push([name, String(values[i].value || '')]);
  }
  return out;
}

function integer(name, value, max) {
  if (!/^[1-9][0-9]{0,8}$/.test(value) || Number(value) > max) throw badValue(name, value);
  return Number(value);
}

// dpr in exact hundredths (100-400).
function hundredths(value) {
  var m = /^([0-9])(?:\.([0-9]{1,2}))?$/.exec(value);
  var total = m ? Number(m[1]) * 100 + Number(((m[2] || '') + '00').slice(0, 2)) : 0;
  if (total < 100 || total > 400) throw badValue('dpr', value);
  return total;
}

// True when Accept lists `media` itself (not a wildcard) with a weight above 0.
function accepts(accept, media) {
  if (!accept) return false;
  var ranges = accept.split(',');
  for (var i = 0; i < ranges.length; i++) {
    var parts = ranges[i].split(';');
    if (parts[0].trim().toLowerCase() !== media) continue;
    var weight = 1000;
    for (var j = 1; j < parts.length; j++) {
      var eq = parts[j].indexOf('=');
      if (eq >= 0 && parts[j].slice(0, eq).trim().toLowerCase() === 'q') {
        var m = /^(?:0(?:\.([0-9]{0,3}))?|1(?:\.0{0,3})?)$/.exec(parts[j].slice(eq + 1).trim());
        weight = !m ? 0 : m[0].charAt(0) === '1' ? 1000 : Number(((m[1] || '') + '000').slice(0, 3));
      }
    }
    if (weight > 0) return true;
  }
  return false;
}

// fmt=auto: avif when Accept lists it, else webp when it lists that, else the master's.
function auto(accept, master) {
  return accepts(accept, 'image/avif') ? 'avif' : accepts(accept, 'image/webp') ? 'webp' : master;
}

// The canonical query for a master of `master` format; throws a Fail for a bad query.
function canonical(list, master, accept) {
  var rawLength = list.length ? list.length - 1 : 0;
  for (var k = 0; k < list.length; k++) rawLength += list[k][0].length + 1 + list[k][1].length;
  if (rawLength > MAX_QUERY) throw bad('query', 'the query is longer than 2048 bytes');
  var given = {};
  var shown = {};
  for (var i = 0; i < list.length; i++) {
    var name = list[i][0];
    var raw = list[i][1];
    if (name === '') throw bad('query', 'the query has an empty parameter name; allowed: ' + NAMES);
    if (!own(ALLOWED, name)) {
      throw bad(name, 'unknown parameter \'' + name.slice(0, 40) + '\'; allowed (lowercase): ' + NAMES);
    }
    if (given[name] !== undefined) {
      throw bad(name, name + ' is given more than once; give each parameter at most once');
    }
    if (raw === '') throw bad(name, name + ' has an empty value; ' + ALLOWED[name]);
    var value = decode(raw);
    if (value === null) throw bad(name, name + ' is not valid percent-encoded UTF-8; ' + ALLOWED[name]);
    shown[name] = value.slice(0, 40);
    if (name === 'w' || name === 'h') given[name] = integer(name, value, MAX_SIDE);
    else if (name === 'q') given.q = integer(name, value, 100);
    else if (name === 'dpr') given.dpr = hundredths(value);
    else if (name === 'fit') {
      if (!own(FITS, value)) throw badValue(name, value);
      given.fit = value;
    } else if (name === 'fmt') {
      if (!own(FORMATS, value)) throw badValue(name, value);
      given.fmt = FORMATS[value];
    } else {
      if (!/^[0-9A-Fa-f]{6}$/.test(value)) throw badValue(name, value);
      given.bg = value.toLowerCase();
    }
  }

  var both = given.w !== undefined && given.h !== undefined;
  if (given.fit !== undefined && !both) {
    throw bad('fit', 'fit needs both w and h; with only one side the aspect ratio is kept');
  }
  if (given.dpr !== undefined && given.w === undefined && given.h === undefined) {
    throw bad('dpr', 'dpr needs w or h; it multiplies the requested size');
  }
  var dpr = given.dpr || 100;
  var sides = ['w', 'h'];
  var out = [];
  for (var s = 0; s < 2; s++) {
    if (given[sides[s]] === undefined) continue;
    var size = Math.floor((given[sides[s]] * dpr + 50) / 100);
    if (size > MAX_SIDE) {
      throw bad(sides[s], sides[s] + ' x dpr is ' + size + ' pixels; at most 8192 are allowed');
    }
    out.push(sides[s] + '=' + size);
  }
  var fit = both ? given.fit || 'cover' : null;
  if (fit && fit !== 'cover') out.push('fit=' + fit);

  var format = given.fmt === 'auto' ? auto(accept, master) : given.fmt || master;
  if (format !== master) out.push('fmt=' + format);
  if (given.q !== undefined) {
    if (format !== 'png') {
      if (given.q !== 80) out.push('q=' + given.q);
    } else if (given.fmt !== 'auto') {
      // With auto the author cannot know the format, so q is ignored when it picks PNG.
      throw bad('q', 'q sets the quality of lossy formats (webp, avif, jpeg), but this output is png; remove q or add fmt=webp, fmt=avif or fmt=jpeg');
    }
  }
  if (given.bg !== undefined && given.bg !== 'ffffff' && (fit === 'contain' || format === 'jpeg')) {
    out.push('bg=' + given.bg);
  }
  if (POLICY) obey(list, given, shown);
  return out.join('&');
}

// The policy's lists, after the URL API accepted the whole query: the first value given
// outside its list, in query order. Values compare in parsed form (w, h before dpr; fmt jpg
// = jpeg; dpr in hundredths; bg lowercase), as build.mjs compiled the lists.
var LISTS = { w: 'widths', h: 'heights', q: 'qualities', fmt: 'formats', dpr: 'dprs', bg: 'backgrounds' };
function obey(list, given, shown) {
  for (var i = 0; i < list.length; i++) {
    var name = list[i][0];
    var allowed = POLICY[LISTS[name]];
    if (allowed && allowed.indexOf(given[name]) < 0) {
      var values = allowed.map(function (v) { return name === 'dpr' ? String(v / 100) : String(v); });
      throw bad(name, name + '=' + shown[name] + ' is not allowed by this deployment\'s policy; allowed ' + LISTS[name] + ': ' + values.join(', '));
    }
  }
}

// ?preset=NAME (alone once sig is removed) -> the preset's pairs. Names are compared as
// sent: they are plain [a-z0-9_-], one spelling each.
function expand(list) {
  var named = false;
  for (var i = 0; i < list.length; i++) if (list[i][0] === 'preset') named = true;
  if (!named) return list;
  if (list.length > 1) {
    throw bad('preset', 'a preset stands alone: ?preset=NAME (plus sig when URLs are signed); it cannot be mixed with other parameters');
  }
  var presets = POLICY.presets;
  var name = list[0][1];
  var names = Object.keys(presets).sort();
  if (!own(presets, name)) {
    throw bad('preset', 'unknown preset \'' + name.slice(0, 40) + '\'; ' + (names.length ? 'allowed: ' + names.join(', ') : 'this policy defines no presets'));
  }
  return presets[name].split('&').map(function (pair) {
    var eq = pair.indexOf('=');
    return [pair.slice(0, eq), pair.slice(eq + 1)];
  });
}

// The configured secrets: null when the KeyValueStore has no such key (signing off), else
// one Buffer per hex line. A line that is not a secret makes the list empty, so every
// signed request fails (closed) rather than some key being skipped. KVS errors propagate.
async function signingKeys() {
  var kvs = cf.kvs();
  if (!(await kvs.exists(KEYS_NAME))) return null;
  var lines = String(await kvs.get(KEYS_NAME)).split('\n');
  var keys = [];
  for (var i = 0; i < lines.length; i++) {
    var line = lines[i].trim();
    if (line === '' || line.charAt(0) === '#') continue;
    if (!/^(?:[0-9a-fA-F]{2}){16,}$/.test(line)) return [];
    keys.push(Buffer.from(line, 'hex'));
  }
  return keys;
}

// The pairs without a trailing sig, after checking it against every key: the message is
// the path as sent + '?' + the query before '&sig='. Compared in constant time.
async function unsigned(uri, list) {
  var last = list[list.length - 1];
  var signed = last[0] === 'sig';
  var rest = signed ? list.slice(0, -1) : list;
  var keys = await signingKeys();
  if (keys === null) return rest;
  if (!signed) {
    throw forbidden('this URL must be signed: add sig, the base64url HMAC-SHA256 of path?query, as the last parameter');
  }
  var message = uri + '?' + rest.map(function (p) { return p[0] + '=' + p[1]; }).join('&');
  var match = false;
  for (var k = 0; k < keys.length; k++) {
    var expected = crypto.createHmac('sha256', keys[k]).update(message).digest('base64url');
    var diff = expected.length ^ last[1].length;
    for (var i = 0; i < expected.length; i++) diff |= expected.charCodeAt(i) ^ last[1].charCodeAt(i);
    if (diff === 0) match = true;
  }
  if (!match) {
    throw forbidden('the signature does not match this path and query; sig must be the last parameter, base64url (no padding) of HMAC-SHA256 over path?query as sent');
  }
  return rest;
}

function header(headers, name) {
  var h = headers && headers[name];
  if (!h) return null;
  if (h.multiValue && h.multiValue.length) {
    return h.multiValue.map(function (v) { return v.value; }).join(',');
  }
  return h.value;
}

function reply(fail) {
  var body = { status: fail.status, error: fail.error };
  if (fail.param !== null) body.param = fail.param;
  body.message = fail.message;
  return {
    statusCode: fail.status,
    statusDescription: fail.status === 404 ? 'Not Found' : fail.status === 403 ? 'Forbidden' : 'Bad Request',
    headers: {
      'content-type': { value: 'application/json' },
      'cache-control': { value: 'public, max-age=60' },
      // The response headers policy adds it to what the cache serves; this answer is ours.
      'x-content-type-options': { value: 'nosniff' }
    },
    body: { encoding: 'text', data: JSON.stringify(body) }
  };
}

async function handler(event) {
  var request = event.request;
  var headers = request.headers || (request.headers = {});
  delete headers[AUTO_MARK];
  delete headers[VIEWER_URL];
  var master = masterFormat(request.uri);
  if (master instanceof Fail) return reply(master);
  try {
    var list = pairs(request.querystring || {});
    var sent = VARIANTS ? request.uri + '?' + list.map(function (p) { return p[0] + '=' + p[1]; }).join('&') : '';
    // A plain master request (no query) needs no signature and no KVS read. Verified on
    // request.uri as sent: nothing may rewrite the path or query before this line.
    if (list.length) list = await unsigned(request.uri, list);
    if (POLICY) list = expand(list);
    request.querystring = canonical(list, master, header(headers, 'accept'));
    for (var i = 0; i < list.length; i++) {
      if (list[i][0] === 'fmt' && decode(list[i][1]) === 'auto') headers[AUTO_MARK] = { value: '1' };
    }
  } catch (e) {
    if (e instanceof Fail) return reply(e);
    throw e;
  }
  // Only now, after the signature was checked on the path as sent.
  request.uri = normalPath(request.uri);
  if (VARIANTS && request.querystring) {
    // The variant's key, named as edge/src/key.rs names it: the bucket answers a variant
    // made before; on a miss the origin group sends this same path to the regional function.
    var fmt = /(?:^|&)fmt=([a-z]+)/.exec(request.querystring);
    var ext = EXTENSIONS[fmt ? fmt[1] : master];
    headers[VIEWER_URL] = { value: sent };
    request.uri = '/' + VARIANTS + request.uri.slice(1) + '/' + request.querystring.replace(/&/g, ',') + '.' + ext;
    request.querystring = '';
  }
  return request;
}
