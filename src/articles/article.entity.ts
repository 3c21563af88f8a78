import { Column, Entity, PrimaryColumn, UpdateDateColumn } from 'typeorm';

/** The demo's own entity, written behind by `WriteBackModule.forFeature([Article])`. */
@Entity({ name: 'articles' })
export class Article {
  /** A slug, chosen by the client: write-behind rows are keyed before Postgres sees them. */
  @PrimaryColumn('text')
  id!: string;

  @Column('text', { default: '' })
  title!: string;

  /** bigint: TypeORM hands it over as a string (exact beyond 2^53). */
  @Column('bigint', { default: 0 })
  views!: string;

  @UpdateDateColumn({ type: 'timestamptz' })
  updatedAt!: Date;
}
