// ESM entry: the same objects as the CommonJS entry.
import ironlock from './index.js'

export const {
  Locker,
  Lock,
  LockError,
  LockBusyError,
  LockLostError,
  QuorumError,
  LockConnectionError,
  LockKeyTypeError,
  ReplicationError,
  configure,
  close,
  getDefaultLocker,
  acquire,
  tryAcquire,
  release,
  extend,
  using,
} = ironlock

export default ironlock
