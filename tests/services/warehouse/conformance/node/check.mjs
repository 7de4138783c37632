// The warehouse driven by @clickhouse/client (Node). One line per check: "ok NAME" or
// "fail NAME: why". NODE_PATH names the folder where the client is installed.
import { createRequire } from 'node:module'
import path from 'node:path'

const require = createRequire(path.join(process.env.CLIENT_MODULES, 'x.js'))
const { createClient } = require('@clickhouse/client')

const url = `http://${process.env.WAREHOUSE_ADDR}`
const compression = { request: true, response: true }
const writer = createClient({ url, username: 'default', password: '', compression })
const analyst = createClient({ url, username: 'analyst', password: process.env.ANALYST_PASSWORD,
                               compression })

async function check (name, fn) {
  try {
    await fn()
    console.log(`ok ${name}`)
  } catch (e) {
    console.log(`fail ${name}: ${String(e && e.message || e).split('\n')[0]}`)
  }
}

function expect (cond, what) { if (!cond) throw new Error(what) }

async function wantCode (fn, code) {
  try { await fn() } catch (e) {
    expect(String(e.code) === String(code), `code ${e.code}, want ${code}: ${e.message}`)
    return
  }
  throw new Error(`no error, want code ${code}`)
}

await check('ping', async () => expect((await analyst.ping()).success, 'ping failed'))
await check('formats', async () => {
  const json = await (await analyst.query({ query: 'SELECT 1 AS n, \'a\' AS s', format: 'JSONEachRow' })).json()
  expect(json.length === 1 && json[0].s === 'a', JSON.stringify(json))
  const csv = await (await analyst.query({ query: 'SELECT number FROM numbers(3)', format: 'CSV' })).text()
  expect(csv === '0\n1\n2\n', csv)
  const compact = await (await analyst.query({ query: 'SELECT 2 AS x', format: 'JSONCompact' })).json()
  expect(compact.data[0][0] === 2, JSON.stringify(compact))
  const tsv = await (await analyst.query({ query: 'SELECT \'x\' AS y', format: 'TabSeparatedWithNames' })).text()
  expect(tsv === 'y\nx\n', tsv)
})
await check('params', async () => {
  const rows = await (await analyst.query({ query: 'SELECT {x:UInt32} + 1 AS v', format: 'JSONEachRow',
                                            query_params: { x: 41 } })).json()
  expect(rows[0].v === 42, JSON.stringify(rows))
})
await check('stream_1m', async () => {
  const rs = await analyst.query({ query: 'SELECT number FROM numbers(1000000)', format: 'JSONCompactEachRow' })
  let count = 0
  let sum = 0
  for await (const rows of rs.stream()) {
    for (const row of rows) { count++; sum += Number(row.json()[0]) }
  }
  expect(count === 1000000 && sum === 499999500000, `count ${count} sum ${sum}`)
})
await check('insert_writer', async () => {
  await writer.command({ query: 'CREATE OR REPLACE TABLE node_conformance (id UInt32, name String) ENGINE = MergeTree ORDER BY id COMMENT \'conformance test\'' })
  const values = Array.from({ length: 10000 }, (_, i) => ({ id: i, name: `n${i}` }))
  await writer.insert({ table: 'node_conformance', values, format: 'JSONEachRow' })
  const rows = await (await analyst.query({ query: 'SELECT count() AS c FROM node_conformance', format: 'JSONEachRow' })).json()
  expect(Number(rows[0].c) === 10000, JSON.stringify(rows))
})
await check('analyst_refused_write', () => wantCode(
  () => analyst.insert({ table: 'node_conformance', values: [{ id: 1, name: 'x' }], format: 'JSONEachRow' }), 164))
await check('analyst_refused_file', () => wantCode(
  () => analyst.query({ query: 'SELECT * FROM file(\'/etc/passwd\', \'LineAsString\')', format: 'JSONEachRow' }), 497))
await check('error_code', () => wantCode(() => analyst.query({ query: 'SELEC 1' }), 62))
await check('session', async () => {
  const session = createClient({ url, username: 'default', password: '', session_id: `node-${Date.now()}` })
  await session.command({ query: 'CREATE TEMPORARY TABLE node_tmp (a UInt8)' })
  await session.command({ query: 'INSERT INTO node_tmp VALUES (5)' })
  const rows = await (await session.query({ query: 'SELECT a FROM node_tmp', format: 'JSONEachRow' })).json()
  expect(rows[0].a === 5, JSON.stringify(rows))
  await wantCode(() => writer.query({ query: 'SELECT a FROM node_tmp' }), 60)
  await session.close()
})
await writer.close()
await analyst.close()
