// hs256 signs claims as an HS256 JWT with secret's UTF-8 bytes: app user
// tokens, and access-key tokens of the hub's REST API (Azure's scheme).
import crypto from 'node:crypto';

export function hs256(claims, secret) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${enc({ alg: 'HS256', typ: 'JWT' })}.${enc(claims)}`;
  const sig = crypto.createHmac('sha256', Buffer.from(secret, 'utf8')).update(body).digest('base64url');
  return `${body}.${sig}`;
}
