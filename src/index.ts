/**
 * effect-task-host: a background task host for Effect applications.
 *
 * @since 0.1.0
 */
export {
  BackgroundTaskRecord,
  CancelPolicy,
  ClosePolicy,
  defaultAttempt,
  duration,
  DurationInput,
  Id,
  isTerminal,
  LiveState,
  matchesRecord,
  RegisterRequest,
  RetrySchedule,
  TaskAttempt,
  TaskBackoff,
  TaskCompletion,
  TaskFilter,
  TaskInput,
  TaskKind,
  TaskOutcome,
  TaskRegistration,
  TaskScope,
  TaskSettings,
  TaskState,
  TaskStats,
  TaskUpdate,
  TerminalState
} from "./BackgroundTask.ts"
export {
  BackgroundTaskEvent,
  type BackgroundTaskEventTag,
  Cancelled,
  CancelRequested,
  Completed,
  Evicted,
  EvictionReason,
  Failed,
  isTaskEvent,
  Lagged,
  matchesEvent,
  Progress,
  Registered,
  Seq,
  StateChanged,
  SubscriptionEvent,
  type TaskEvent,
  Transferred
} from "./TaskEvent.ts"
export {
  type AwaitOptions,
  BackgroundTaskHost,
  type BackgroundTaskHostOptions,
  type BackgroundTaskHostService,
  type BackgroundTaskHostStoreOptions,
  type BackgroundTaskSession,
  LocalBackgroundTaskHost,
  type RecoveryHandler,
  type RecoveryDecision,
  type ExternalRecoveryHandler,
  type RecoveryReport,
  type RegisterError,
  type SessionOptions,
  type SubscribeOptions,
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
export { TaskStore, type TaskStoreSqlOptions } from "./TaskStore.ts"
export {
  CorruptRecord,
  HostStopped,
  LeaseHeld,
  StoreMisconfigured,
  StoreRejected,
  StoreUnreachable,
  TaskStoreError,
  TaskStoreErrorReason
} from "./TaskStoreError.ts"
export { TaskView } from "./TaskView.ts"
