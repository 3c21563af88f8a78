import { Column, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';

export type WriteBackOperation = 'upsert' | 'delete' | 'delta';

/** A write Postgres rejected permanently `attempts` times; kept until it is replayed or discarded. */
@Entity({ name: 'write_back_dead_letters', synchronize: false })
@Index('write_back_dead_letters_key_idx', ['key'])
export class WriteBackDeadLetterEntity {
  @PrimaryGeneratedColumn({ type: 'bigint' })
  id!: string;

  @Column({ type: 'text' })
  key!: string;

  /** The rejected value; null for a delete. */
  @Column({ type: 'jsonb', nullable: true })
  value!: unknown;

  @Column({ type: 'bigint' })
  version!: string;

  @Column({ type: 'text' })
  operation!: WriteBackOperation;

  @Column({ name: 'error_code', type: 'text', nullable: true })
  errorCode!: string | null;

  @Column({ name: 'error_message', type: 'text' })
  errorMessage!: string;

  @Column({ type: 'integer' })
  attempts!: number;

  @Column({ name: 'first_failed_at', type: 'timestamptz' })
  firstFailedAt!: Date;

  @Column({ name: 'last_failed_at', type: 'timestamptz' })
  lastFailedAt!: Date;

  /** The entity of a row of `WriteBackModule.forFeature` (its key is then `Entity:[primary key]`); null otherwise. */
  @Column({ type: 'text', nullable: true })
  entity!: string | null;
}
