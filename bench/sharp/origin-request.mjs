// The peer for the cold-start and distance comparisons: an origin-request Lambda@Edge
// handler doing imgedge's job with sharp and @aws-sdk/client-s3, written the way AWS's image
// samples are (module-scope S3 client, GetObject → sharp → PutObject, rewrite request.uri).
// It handles only what the benchmark sends (`w`, `fmt`, `q`, or no query: the original);
// it is not a second product.
// Settings come from the environment (bench only): BUCKET, AWS_REGION, AWS_ENDPOINT_URL.
import { GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import sharp from "sharp";

const s3 = new S3Client({ forcePathStyle: Boolean(process.env.AWS_ENDPOINT_URL) });
const bucket = process.env.BUCKET;
const types = { webp: "image/webp", jpeg: "image/jpeg", png: "image/png", avif: "image/avif" };

export const handler = async (event) => {
  const request = event.Records[0].cf.request;
  if (!request.querystring) return request; // no transformation asked: the original, from S3
  const params = new URLSearchParams(request.querystring);
  const master = decodeURIComponent(request.uri.slice(1));
  const w = Number(params.get("w"));
  const fmt = params.get("fmt") ?? "png";
  const q = Number(params.get("q") ?? 80);
  const query = [`w=${w}`, `fmt=${fmt}`].join(",");
  const variant = `_variants/sharp/${master}/${query}.${fmt === "jpeg" ? "jpg" : fmt}`;

  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: master }));
  const bytes = Buffer.from(await got.Body.transformToByteArray());
  let img = sharp(bytes).rotate().resize({ width: w, withoutEnlargement: true });
  img = fmt === "png" ? img.png() : img.toFormat(fmt, { quality: q });
  const body = await img.toBuffer();
  await s3.send(
    new PutObjectCommand({
      Bucket: bucket,
      Key: variant,
      Body: body,
      ContentType: types[fmt],
      CacheControl: "public, max-age=31536000, immutable",
      Metadata: { "source-etag": got.ETag ?? "" },
    }),
  );
  request.uri = "/" + variant.split("/").map(encodeURIComponent).join("/");
  request.querystring = "";
  return request;
};
