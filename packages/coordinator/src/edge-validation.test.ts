import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import { describe, it } from 'node:test'
import { unstorableFields } from './edge-validation.ts'

describe('unstorableFields', () => {
  it('finds NUL text and non-finite numbers in parsed bodies, query objects without a prototype included', () => {
    const query = Object.assign(Object.create(null) as Record<string, unknown>, { name: 'a\u0000b' })
    assert.deepEqual(unstorableFields(query, 'querystring'), [
      { field: 'querystring.name', message: 'must not contain a NUL character' },
    ])
    // Path params as find-my-way makes them: an instance of a function whose prototype has no prototype.
    const NullObject = function () {} as unknown as new () => Record<string, unknown>
    NullObject.prototype = Object.create(null) as object
    const params = Object.assign(new NullObject(), { id: '\u0000' })
    assert.deepEqual(
      unstorableFields(params, 'params').map((issue) => issue.field),
      ['params.id'],
    )
    assert.deepEqual(
      unstorableFields({ nodes: [1, Number.POSITIVE_INFINITY] }).map((issue) => issue.field),
      ['nodes[1]'],
    )
  })

  it('does not walk into a streamed body (an artifact upload), whose fields reach the socket and server', () => {
    const stream = Readable.from(['bytes'])
    // A NUL inside the stream's own state is not input: it must not be reported, nor the stream walked.
    ;(stream as unknown as Record<string, unknown>)['label'] = 'x\u0000'
    assert.deepEqual(unstorableFields(stream), [])
    assert.deepEqual(unstorableFields(Buffer.from('a\u0000b')), [])
  })
})
