// Seeds the cold-start bucket: `node s3-seed.mjs BUCKET [KEY=FILE …]` creates the bucket
// (if missing) and puts each file, with the same SDK the peer handler uses. Reads
// AWS_ENDPOINT_URL / AWS_REGION / credentials from the environment.
import { readFile } from "node:fs/promises";
import { CreateBucketCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";

const s3 = new S3Client({ forcePathStyle: true });
const [bucket, ...pairs] = process.argv.slice(2);
try {
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
} catch (e) {
  if (e.name !== "BucketAlreadyOwnedByYou" && e.name !== "BucketAlreadyExists") throw e;
}
for (const pair of pairs) {
  const at = pair.indexOf("=");
  const [key, file] = [pair.slice(0, at), pair.slice(at + 1)];
  await s3.send(
    new PutObjectCommand({ Bucket: bucket, Key: key, Body: await readFile(file), ContentType: "image/png" }),
  );
}
