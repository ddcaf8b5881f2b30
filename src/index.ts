/**
 * effect-task-host: a background task host for Effect applications.
 *
 * @since 0.1.0
 */
export {
  BackgroundTaskEvent,
  type BackgroundTaskEventTag,
  BackgroundTaskRecord,
  CancelPolicy,
  Cancelled,
  CancelRequested,
  ClosePolicy,
  Completed,
  defaultAttempt,
  duration,
  DurationInput,
  Evicted,
  EvictionReason,
  Failed,
  Id,
  isTaskEvent,
  isTerminal,
  Lagged,
  LiveState,
  matchesEvent,
  matchesRecord,
  Progress,
  Registered,
  RegisterRequest,
  RetrySchedule,
  Seq,
  StateChanged,
  SubscriptionEvent,
  TaskAttempt,
  TaskCompletion,
  type TaskEvent,
  TaskFilter,
  TaskKind,
  TaskOutcome,
  TaskRegistration,
  TaskScope,
  TaskState,
  TaskStats,
  TaskUpdate,
  TerminalState,
  Transferred
} from "./BackgroundTask.ts"
export {
  BackgroundTaskHost,
  type BackgroundTaskHostOptions,
  type BackgroundTaskHostService,
  type BackgroundTaskHostStoreOptions,
  type BackgroundTaskSession,
  LocalBackgroundTaskHost,
  type RecoveryHandler,
  type RecoveryReport,
  type RegisterError,
  type SessionOptions,
  type TaskTree,
  type TaskWatch,
  type WatchOptions
} from "./BackgroundTaskHost.ts"
export {
  InvalidOptions,
  InvalidTransition,
  InvokeError,
  isPluginError,
  PluginError,
  RegistrationError,
  SessionError,
  SnapshotError,
  TaskAlreadyExists,
  TaskNotFound,
  TaskTimeout
} from "./PluginError.ts"
export { TaskContext } from "./TaskContext.ts"
export { TaskMetrics } from "./TaskMetrics.ts"
export {
  CorruptRecord,
  HostStopped,
  LeaseHeld,
  StoreMisconfigured,
  StoreRejected,
  StoreUnreachable,
  TaskStore,
  TaskStoreError,
  TaskStoreErrorReason,
  type TaskStoreSqlOptions
} from "./TaskStore.ts"
export { TaskView } from "./TaskView.ts"
