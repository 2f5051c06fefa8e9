'use strict'

// Plain JS, so decorators are applied the way TypeScript's emitted `__decorate` applies them:
// Reflect.decorate([top, …, bottom], prototype, name, descriptor) runs bottom-up.

require('reflect-metadata')
const { execFile } = require('node:child_process')
const path = require('node:path')
const { promisify } = require('node:util')
const { NestFactory } = require('@nestjs/core')
const { Catch, Controller, Injectable, Module, Param, Post } = require('@nestjs/common')
const { Observable } = require('rxjs')
const { startRedis, stopAll } = require('../helpers/redis-server')
const { send } = require('../fixtures/http-client')
const { thrownBy } = require('../helpers/thrown')
const ironlock = require('../..')
const { Locked } = require('../../lib/nest')

const { Locker, LockBusyError } = ironlock
const run = promisify(execFile)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function decorateMethod(Class, name, ...decorators) {
  const descriptor = Object.getOwnPropertyDescriptor(Class.prototype, name)
  Object.defineProperty(Class.prototype, name, Reflect.decorate(decorators, Class.prototype, name, descriptor))
}

/** Counts entries into a critical section and how many found someone already inside. */
function overlapMeter() {
  const meter = {
    inside: 0,
    overlaps: 0,
    async measure(fn) {
      meter.inside += 1
      if (meter.inside > 1) meter.overlaps += 1
      try {
        return await fn()
      } finally {
        meter.inside -= 1
      }
    },
  }
  return meter
}

let server
let redis
let locker
let otherProcess

beforeAll(async () => {
  server = await startRedis()
  redis = server.client()
  locker = new Locker(server.url)
  otherProcess = new Locker(server.url)
})

afterAll(async () => {
  await Promise.all([locker.close(), otherProcess.close(), ironlock.close()])
  await stopAll()
})

beforeEach(() => redis.flushall())

describe('in a NestJS app', () => {
  let app
  let port
  const meter = overlapMeter()

  // What the integration docs suggest: answer LockBusyError with 409 and Retry-After.
  class LockBusyFilter {
    catch(error, host) {
      const response = host.switchToHttp().getResponse()
      response.set('Retry-After', String(Math.max(1, Math.ceil(error.retryAfter / 1000))))
      response.status(409).json({ code: error.code })
    }
  }
  Catch(LockBusyError)(LockBusyFilter)

  class StockService {
    /** Read the stock, pay, write stock - 1: oversells unless one order runs at a time. */
    async sell(sku) {
      return meter.measure(async () => {
        const stock = Number(await redis.get(`stock:${sku}`))
        if (stock <= 0) return false
        await sleep(2)
        await redis.set(`stock:${sku}`, stock - 1)
        return true
      })
    }
  }

  class OrdersController {
    constructor(stock) {
      this.stock = stock
    }

    async buy(sku) {
      return { sold: await this.stock.sell(sku) }
    }

    async buyNow(sku) {
      return { sold: await this.stock.sell(sku) }
    }

    /** As `async` methods returning `httpService.get(…)` do: the work runs when Nest subscribes. */
    async reserve(sku) {
      return new Observable((subscriber) => {
        meter.measure(async () => {
          await sleep(20)
          return { reserved: sku }
        }).then((value) => {
          subscriber.next(value)
          subscriber.complete()
        }, (error) => subscriber.error(error))
      })
    }
  }

  class AppModule {}

  beforeAll(async () => {
    Injectable()(StockService)
    decorateMethod(StockService, 'sell', Locked((sku) => `lock:sku:${sku}`, { locker, ttl: 5000, wait: Infinity }))

    Controller('orders')(OrdersController)
    Reflect.defineMetadata('design:paramtypes', [StockService], OrdersController)
    Param('sku')(OrdersController.prototype, 'buy', 0)
    decorateMethod(OrdersController, 'buy', Post(':sku'))
    // @Locked above @Post: Post's route metadata sits on the original method and must survive the wrap.
    Param('sku')(OrdersController.prototype, 'buyNow', 0)
    decorateMethod(OrdersController, 'buyNow', Locked((sku) => `lock:now:${sku}`, { locker, wait: 0 }), Post('now/:sku'))
    Param('sku')(OrdersController.prototype, 'reserve', 0)
    decorateMethod(OrdersController, 'reserve', Post('reserve/:sku'), Locked((sku) => `lock:reserve:${sku}`, { locker, wait: Infinity }))

    Module({ controllers: [OrdersController], providers: [StockService] })(AppModule)

    app = await NestFactory.create(AppModule, { logger: false })
    app.useGlobalFilters(new LockBusyFilter())
    await app.listen(0, '127.0.0.1')
    port = app.getHttpServer().address().port
  })

  afterAll(() => app.close())

  test('60 concurrent orders for 10 pairs through a @Locked service method: exactly 10 sold, never two inside', async () => {
    await redis.set('stock:sneakers', 10)
    const responses = await Promise.all(Array.from({ length: 60 }, () => send(port, 'POST', '/orders/sneakers')))
    expect(responses.map((response) => response.status)).toEqual(Array(60).fill(201))
    const sold = responses.filter((response) => JSON.parse(response.body).sold)
    expect(sold).toHaveLength(10)
    expect(meter.overlaps).toBe(0)
    expect(await redis.get('stock:sneakers')).toBe('0')
    expect(await redis.exists('lock:sku:sneakers')).toBe(0)
  })

  test('a @Locked controller method that returns an Observable holds the lock until it completes: 20 concurrent requests, never two inside', async () => {
    const overlapsBefore = meter.overlaps
    const responses = await Promise.all(Array.from({ length: 20 }, () => send(port, 'POST', '/orders/reserve/boots')))
    expect(responses.map((response) => response.status)).toEqual(Array(20).fill(201))
    expect(JSON.parse(responses[0].body)).toEqual({ reserved: 'boots' })
    expect(meter.overlaps - overlapsBefore).toBe(0)
    expect(await redis.exists('lock:reserve:boots')).toBe(0)
  })

  test('@Locked on a controller method keeps its @Post route; a busy lock reaches the exception filter', async () => {
    await redis.set('stock:boots', 1)
    const free = await send(port, 'POST', '/orders/now/boots')
    expect(free.status).toBe(201)
    expect(JSON.parse(free.body)).toEqual({ sold: true })

    await otherProcess.acquire('lock:now:boots', { ttl: 3000 })
    const busy = await send(port, 'POST', '/orders/now/boots')
    expect(busy.status).toBe(409)
    expect(Number(busy.headers['retry-after'])).toBeGreaterThanOrEqual(1)
    expect(JSON.parse(busy.body)).toEqual({ code: 'ELOCKBUSY' })
  })
})

describe('in a plain class', () => {
  test('runs one call at a time: 100 concurrent increments end with the exact count', async () => {
    const meter = overlapMeter()
    class Counter {
      value = 0
      async increment() {
        return meter.measure(async () => {
          const seen = this.value
          await sleep(1)
          this.value = seen + 1
          return this.value
        })
      }
    }
    decorateMethod(Counter, 'increment', Locked('lock:counter', { locker, wait: Infinity }))

    const counter = new Counter()
    await Promise.all(Array.from({ length: 100 }, () => counter.increment()))
    expect(counter.value).toBe(100)
    expect(meter.overlaps).toBe(0)
  })

  test('the key function gets the arguments and the instance; the method gets them too and keeps its name', async () => {
    class Accounts {
      prefix = 'lock:account:'
      async debit(id, amount) {
        return { id, amount, held: await redis.exists(`${this.prefix}${id}`) }
      }
    }
    decorateMethod(Accounts, 'debit', Locked(function (id) { return this.prefix + id }, { locker }))

    expect(Accounts.prototype.debit.name).toBe('debit')
    expect(await new Accounts().debit(42, 5)).toEqual({ id: 42, amount: 5, held: 1 })
    expect(await redis.exists('lock:account:42')).toBe(0)
  })

  test('a throwing method rejects with its error and releases', async () => {
    const boom = new Error('boom')
    class Jobs {
      async run() {
        throw boom
      }
    }
    decorateMethod(Jobs, 'run', Locked('lock:job', { locker }))
    await expect(new Jobs().run()).rejects.toBe(boom)
    expect(await redis.exists('lock:job')).toBe(0)
  })

  test('a method that throws synchronously rejects with its error and releases', async () => {
    const boom = new Error('boom')
    class Jobs {}
    Jobs.prototype.run = function run() { throw boom }
    decorateMethod(Jobs, 'run', Locked('lock:sync-throw', { locker }))
    await expect(new Jobs().run()).rejects.toBe(boom)
    expect(await redis.exists('lock:sync-throw')).toBe(0)
  })

  test('a method whose result is an Observable, or a thenable, keeps the lock until it settles; the call resolves with its last value', async () => {
    class Quotes {
      observable() {
        return new Observable((subscriber) => {
          setTimeout(async () => {
            subscriber.next('first')
            subscriber.next({ heldWhileEmitting: await redis.exists('lock:quotes') })
            subscriber.complete()
          }, 50)
        })
      }

      thenable() {
        return { then: (resolve) => setTimeout(async () => resolve({ heldWhileSettling: await redis.exists('lock:quotes') }), 50) }
      }

      failing() {
        return new Observable((subscriber) => subscriber.error(new Error('no quote')))
      }
    }
    for (const name of ['observable', 'thenable', 'failing']) decorateMethod(Quotes, name, Locked('lock:quotes', { locker, wait: 5000 }))
    const quotes = new Quotes()
    expect(await quotes.observable()).toEqual({ heldWhileEmitting: 1 })
    expect(await quotes.thenable()).toEqual({ heldWhileSettling: 1 })
    await expect(quotes.failing()).rejects.toThrow('no quote')
    expect(await redis.exists('lock:quotes')).toBe(0)
  })

  test('a busy lock rejects LockBusyError without calling the method', async () => {
    const original = jest.fn(async () => 'ran')
    class Reports {}
    Reports.prototype.build = original
    decorateMethod(Reports, 'build', Locked(['lock:report', 'lock:other'], { locker, wait: 0 }))
    await otherProcess.acquire('lock:report', { ttl: 3000 })
    await expect(new Reports().build()).rejects.toThrow(LockBusyError)
    expect(original).not.toHaveBeenCalled()
  })

  test('without a locker option it uses the default locker, looked up at call time', async () => {
    class Mailer {
      async send() {
        return redis.exists('lock:mailer')
      }
    }
    decorateMethod(Mailer, 'send', Locked('lock:mailer'))
    ironlock.configure(server.url)
    expect(await new Mailer().send()).toBe(1)
  })

  test('works as a standard (TC39) method decorator too', async () => {
    async function sum(a, b) {
      return a + b + (await redis.exists('lock:sum'))
    }
    const locked = Locked('lock:sum', { locker })(sum, { kind: 'method', name: 'sum' })
    expect(locked.name).toBe('sum')
    expect(await locked(1, 2)).toBe(4)
  })

  test('works without reflect-metadata loaded', async () => {
    const script = `
      const { Locked } = require(${JSON.stringify(path.join(__dirname, '..', '..', 'lib', 'nest.js'))})
      const using = (key, options, fn) => fn()
      class A { async m(x) { return x * 2 } }
      const descriptor = Locked('k', { locker: { using } })(A.prototype, 'm', Object.getOwnPropertyDescriptor(A.prototype, 'm'))
      descriptor.value.call(new A(), 21).then((value) => console.log(typeof Reflect.getMetadataKeys, value))
    `
    const { stdout } = await run(process.execPath, ['-e', script], { timeout: 10000 })
    expect(stdout.trim()).toBe('undefined 42')
  })

  test('bad arguments throw when the class is defined', () => {
    expect(() => Locked(42)).toThrow(expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }))
    expect(() => Locked('')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }))
    expect(() => Locked('k', { ttl: 0 })).toThrow(expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }))
    expect(() => Locked('k', { locker: 'redis://x' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
    expect(() => Locked('k')({}, 'field', { value: 3 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
  })

  test('an option name @Locked() does not know throws when the class is defined, naming it and the one meant', () => {
    const unknown = (options, name, meant) => {
      const error = thrownBy(() => Locked('k', options))
      expect(error).toBeInstanceOf(RangeError)
      expect(error.code).toBe('ERR_INVALID_ARG_VALUE')
      expect(error.message).toContain(`'${name}'`)
      if (meant === undefined) expect(error.message).not.toContain('Did you mean')
      else expect(error.message).toContain(`Did you mean '${meant}'?`)
    }
    unknown({ tll: 1000 }, 'options.tll', 'ttl')
    unknown({ lockr: {} }, 'options.lockr', 'locker')
    unknown({ autoExtnd: false }, 'options.autoExtnd', 'autoExtend')
    unknown({ retries: 3 }, 'options.retries', undefined)
  })

  test('is exported as ironlock/nest', () => {
    expect(require('ironlock/nest').Locked).toBe(Locked)
  })
})
