'use strict'

// A TCP proxy on loopback between a client and one Redis that can be partitioned: while it is,
// every byte in either direction is dropped and nothing is closed, so both ends see a silent
// network (no RST, no FIN), as in a real partition. A connection opened during the partition is
// accepted and gets no upstream until the partition heals. `heal()` forwards again; the streams
// may then be cut mid-command, which Redis and the client must survive like after a real one.

const net = require('node:net')

class PartitionProxy {
  #server
  #target
  #links = new Set()
  #partitioned = false

  constructor(server, target) {
    this.#server = server
    this.#target = target
    this.dropped = { toRedis: 0, toClient: 0 }
    this.accepted = 0
  }

  /** Listens on a free loopback port and forwards to `{ host, port }`. */
  static async start(target) {
    const server = net.createServer()
    const proxy = new PartitionProxy(server, target)
    server.on('connection', (socket) => proxy.#link(socket))
    await new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen({ host: '127.0.0.1', port: 0 }, resolve)
    })
    return proxy
  }

  get port() {
    return this.#server.address().port
  }

  /** The proxied address as a URL, with the target's password if it has one. */
  url(password) {
    const credentials = password === undefined ? '' : `:${encodeURIComponent(password)}@`
    return `redis://${credentials}127.0.0.1:${this.port}`
  }

  get partitioned() {
    return this.#partitioned
  }

  get connections() {
    return this.#links.size
  }

  partition() {
    this.#partitioned = true
  }

  heal() {
    this.#partitioned = false
    for (const link of this.#links) if (!link.upstream) this.#connectUpstream(link)
  }

  /** Closes every connection and stops listening. */
  async close() {
    for (const link of this.#links) {
      link.client.destroy()
      link.upstream?.destroy()
    }
    this.#links.clear()
    await new Promise((resolve) => this.#server.close(resolve))
  }

  #link(client) {
    this.accepted += 1
    const link = { client, upstream: null, pending: [] }
    this.#links.add(link)
    client.setNoDelay(true)
    client.on('data', (chunk) => {
      if (this.#partitioned) this.dropped.toRedis += chunk.length
      else if (link.upstream) link.upstream.write(chunk)
      else link.pending.push(chunk)
    })
    const drop = () => {
      this.#links.delete(link)
      client.destroy()
      link.upstream?.destroy()
    }
    client.on('error', drop)
    client.on('close', drop)
    if (!this.#partitioned) this.#connectUpstream(link)
  }

  #connectUpstream(link) {
    const upstream = net.connect({ host: this.#target.host, port: this.#target.port })
    link.upstream = upstream
    upstream.setNoDelay(true)
    upstream.on('connect', () => {
      for (const chunk of link.pending.splice(0)) upstream.write(chunk)
    })
    upstream.on('data', (chunk) => {
      if (this.#partitioned) this.dropped.toClient += chunk.length
      else link.client.write(chunk)
    })
    const drop = () => {
      this.#links.delete(link)
      link.client.destroy()
      upstream.destroy()
    }
    upstream.on('error', drop)
    upstream.on('close', drop)
  }
}

module.exports = { PartitionProxy }
