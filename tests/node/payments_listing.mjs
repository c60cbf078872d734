// A double of the marketplace's payments service listing: GET /payments/pending answers
// {"payments": [{pendingId, offerId, status, buyerWalletAddressUrl, incomingPaymentId?,
// outgoingPaymentId?}]}, the control file's "payments" as written (a test may hand the gateway
// malformed items on purpose). With --token, `Authorization: Bearer TOKEN` is required (RFC 6750).
//
// usage: node payments_listing.mjs CONTROL_FILE [--token TOKEN]
// CONTROL_FILE: {"payments": [...], "behaviour"?: ..., "redirect_to"?: URL}
// Prints {"port": N} once listening; GET /__stats answers the counts (double_server.mjs).
import { timingSafeEqual } from 'node:crypto'
import { parseArgs } from 'node:util'
import { json, serveDouble } from './double_server.mjs'

const { values, positionals } = parseArgs({
  options: { token: { type: 'string' } },
  allowPositionals: true
})
if (positionals.length !== 1) {
  process.stderr.write('usage: node payments_listing.mjs CONTROL_FILE [--token TOKEN]\n')
  process.exit(2)
}
const expected = values.token === undefined ? null : Buffer.from(values.token)

function error (status, message) {
  return { error: message }
}

// RFC 6750 2.1: the scheme is case-insensitive, one space, then the token as sent.
function bearerMatches (header) {
  const match = /^Bearer (.+)$/i.exec(header ?? '')
  if (!match) return false
  const given = Buffer.from(match[1])
  return given.length === expected.length && timingSafeEqual(given, expected)
}

function check ({ method, path, headers }) {
  if (path !== '/payments/pending') {
    return { refuse: json(404, error(404, `no route ${path}`)) }
  }
  if (method !== 'GET') {
    return { refuse: json(405, error(405, `${method} not allowed`), { Allow: 'GET' }) }
  }
  if (expected !== null && !bearerMatches(headers.authorization)) {
    // RFC 6750 3: a request without credentials gets the bare challenge, a bad token its error.
    const challenge = headers.authorization === undefined
      ? 'Bearer realm="payments"'
      : 'Bearer realm="payments", error="invalid_token"'
    return {
      refuse: json(401, error(401, 'unauthorized'), { 'WWW-Authenticate': challenge }),
      detail: headers.authorization === undefined ? 'no Authorization' : 'wrong token'
    }
  }
  return { accept: {} }
}

function answer (_request, control) {
  const payments = control.payments ?? []
  return { body: { payments }, items: payments.length }
}

serveDouble('payments_listing', positionals[0], {
  check,
  answer,
  error,
  paged: false,
  empty: { payments: [] },
  huge: {
    prefix: '{"payments":[',
    item: (i) => ({
      pendingId: `huge-${i}`,
      offerId: `offer-huge-${i}`,
      status: 'pending',
      buyerWalletAddressUrl: 'https://wallet.example/huge',
      note: 'x'.repeat(900)
    }),
    suffix: ']}'
  }
})
