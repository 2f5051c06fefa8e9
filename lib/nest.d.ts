// require('ironlock/nest'): the @Locked() method decorator.

import type { AcquireOptions, Locker } from '../index'

export interface LockedOptions extends AcquireOptions {
  /** Where the locks live. Default: ironlock's default locker, looked up on every call. */
  locker?: Locker
}

/** A lock key, or a function of the method's arguments (called with the instance as `this`) that returns one. */
export type LockedKey<Args extends any[]> = string | string[] | ((this: any, ...args: Args) => string | string[])

/**
 * A method the decorator accepts: async, and its leading parameters are the key function's (the
 * key function may take fewer, e.g. `(orderId: string) => …` for `capture(orderId, amount)`).
 */
type AsyncMethod<Args extends any[]> = (...args: [...Args, ...any[]]) => Promise<any>

/**
 * Decorates an async method (the lock is taken asynchronously, so the wrapped method always
 * returns a Promise). Works with `experimentalDecorators` (NestJS) and with standard decorators.
 */
export interface LockedDecorator<Args extends any[]> {
  <M extends AsyncMethod<Args>>(target: object, propertyKey: string | symbol, descriptor: TypedPropertyDescriptor<M>): TypedPropertyDescriptor<M>
  <M extends AsyncMethod<Args>>(method: M, context: ClassMethodDecoratorContext<unknown, M>): M
}

/**
 * Runs every call of the method as `locker.using(key, opts, () => method(...args))`: one call at a
 * time per key, across processes. The lock is released once the method's result has settled; a
 * result that is an Observable (or a Promise of one) is subscribed under the lock, held until it
 * completes, and the call resolves with its last value. Metadata set on the method by decorators applied before it
 * (e.g. Nest's `@Post()`) is copied to the wrapper. For instance, `@Locked((id: string) => 'order:' + id)`
 * on `async pay(id: string)` lets one payment per order run at a time.
 */
export declare function Locked<Args extends any[] = any[]>(key: LockedKey<Args>, opts?: LockedOptions): LockedDecorator<Args>
